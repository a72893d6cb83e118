"""Crashes: a broker SIGKILLed mid-batch or mid-linkage, and its redis-server killed.

Each test starts its own broker (never the shared ``broker_server``), since it kills it.
"""

from __future__ import annotations

import os
import signal
import time

import httpx
import pytest

from broker.linkage import Linker
from broker.store.linkage_store import LinkageStore
from client_sdk.client import BrokerClient
from keys.batch import BatchReader
from keys.wire import BatchState, DatasetDeclaration
from tests.harness import make_batch, random_refs, random_tokens, start_broker, unique


@pytest.fixture
def own_broker(tmp_path):
    broker = start_broker(tmp_path / "broker")
    yield broker
    broker.stop()


def _setup(broker, tmp_path, n=120, chunk=10):
    org, credential = broker.add_org()
    domain, dataset = unique("dom"), unique("ds")
    path = tmp_path / "batch.tsb"
    manifest = make_batch(
        path,
        dataset=dataset,
        refs=random_refs(n, seed=11),
        tokens=random_tokens(n, 2, seed=11),
        chunk_size=chunk,
        domain=domain,
    )
    with BrokerClient(broker.url, credential) as client:
        client.declare_dataset(
            DatasetDeclaration(
                name=dataset,
                one_record_per_person=True,
                domain=domain,
                spec_hash=manifest.spec_hash,
                key_version=manifest.key_version,
                match_keys=manifest.match_keys,
            )
        )
    return org, credential, domain, dataset, path, manifest


def _held(broker, domain, dataset_id):
    report = Linker(LinkageStore(broker.runtime.store.redis, scope=domain)).report()
    return next((d.records for d in report.datasets if d.id == dataset_id), 0)


def test_broker_killed_mid_batch_shows_no_partial_batch(own_broker, tmp_path):
    org, credential, domain, dataset, path, manifest = _setup(own_broker, tmp_path)
    chunks = list(BatchReader(path).raw_chunks())
    with BrokerClient(own_broker.url, credential) as client:
        client.open_batch(dataset, manifest)
        for index in range(5):
            client.put_chunk(dataset, manifest.batch_id, index, chunks[index])
    own_broker.kill()
    own_broker.start()
    assert _held(own_broker, domain, f"{org}/{dataset}") == 0
    with BrokerClient(own_broker.url, credential) as client:
        status = client.batch_status(dataset, manifest.batch_id)
        assert status.state is BatchState.RECEIVING
        assert status.received == [0, 1, 2, 3, 4]
        final = client.upload(path, poll=0.05)
    assert final.state is BatchState.LINKED
    assert final.records_received == 120
    assert _held(own_broker, domain, f"{org}/{dataset}") == 120


def test_broker_killed_after_commit_links_the_batch_on_restart(own_broker, tmp_path):
    org, credential, domain, dataset, path, manifest = _setup(own_broker, tmp_path, n=200)
    with BrokerClient(own_broker.url, credential) as client:
        committed = client.upload(path, wait=False)
    assert committed.state in (BatchState.COMMITTED, BatchState.LINKING, BatchState.LINKED)
    own_broker.kill()
    own_broker.start()
    with BrokerClient(own_broker.url, credential) as client:
        final = client.wait_linked(dataset, manifest.batch_id, timeout=60, poll=0.05)
    assert final.state is BatchState.LINKED
    assert _held(own_broker, domain, f"{org}/{dataset}") == 200


def test_redis_killed_loses_nothing_acknowledged(own_broker, tmp_path):
    org, credential, domain, dataset, path, manifest = _setup(own_broker, tmp_path)
    chunks = list(BatchReader(path).raw_chunks())
    pid_file = own_broker.data_dir / "redis" / "redis.pid"
    with BrokerClient(own_broker.url, credential, backoff=0.2, retries=8) as client:
        client.open_batch(dataset, manifest)
        for index in range(7):
            client.put_chunk(dataset, manifest.batch_id, index, chunks[index])
        old_pid = int(pid_file.read_text())
        own_broker.close_runtime()
        os.kill(old_pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            new_pid = int(pid_file.read_text()) if pid_file.exists() else old_pid
            ready = httpx.get(own_broker.url + "/readyz", timeout=2).status_code == 200
            if new_pid != old_pid and ready:
                break
            time.sleep(0.1)
        status = client.batch_status(dataset, manifest.batch_id)
        assert status.received == list(range(7))
        assert status.records_received == 70
        final = client.upload(path, poll=0.05)
    assert final.state is BatchState.LINKED
    assert _held(own_broker, domain, f"{org}/{dataset}") == 120
