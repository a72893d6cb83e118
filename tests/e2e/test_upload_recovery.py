"""Crashes: a broker SIGKILLed mid-batch or mid-linkage, and its redis-server killed.

Each test starts its own broker (never the shared ``broker_server``), since it kills it.
"""

from __future__ import annotations

import os
import signal
import time

import httpx
import pytest

from broker.audit import read_audit
from broker.linkage import Linker
from broker.store.linkage_store import LinkageStore
from client_sdk.client import BrokerClient
from client_sdk.errors import BrokerCallError
from keys.batch import BatchReader
from keys.wire import BatchState, DatasetDeclaration
from tests.support.harness import make_batch, random_refs, random_tokens, start_broker, unique


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


def _crash_at_commit(broker, point, credential, dataset, path):
    """Restart ``broker`` with the fault point set, upload, and wait for it to die there."""
    broker.stop()
    broker.env.update({"TESSERA_BROKER_DEVELOPMENT": "1", "TESSERA_BROKER_FAULT_POINT": point})
    broker.start()
    with (
        BrokerClient(broker.url, credential, retries=0) as client,
        pytest.raises(BrokerCallError),
    ):
        client.upload(path, wait=False)
    assert broker.process is not None
    assert broker.process.wait(30) == 70  # it died at the fault point, as a crash would
    broker.close_runtime()
    broker.process = None
    del broker.env["TESSERA_BROKER_FAULT_POINT"]
    broker.start()


def _commit_entries(broker, dataset_id):
    entries = read_audit(broker.runtime.store, start=0, count=100_000)
    return [e for e in entries if e.action == "batch.commit.append" and e.dataset == dataset_id]


def test_a_crash_right_after_the_commit_script_still_links_and_audits(own_broker, tmp_path):
    org, credential, domain, dataset, path, manifest = _setup(own_broker, tmp_path)
    _crash_at_commit(own_broker, "commit.committed", credential, dataset, path)
    with BrokerClient(own_broker.url, credential) as client:
        # No retry from the client: the restarted broker finds the batch on its own.
        final = client.wait_linked(dataset, manifest.batch_id, timeout=60, poll=0.05)
    assert final.state is BatchState.LINKED
    assert _held(own_broker, domain, f"{org}/{dataset}") == 120
    assert len(_commit_entries(own_broker, f"{org}/{dataset}")) == 1


def test_a_crash_between_queue_and_commit_leaves_a_batch_the_retry_commits(own_broker, tmp_path):
    org, credential, domain, dataset, path, manifest = _setup(own_broker, tmp_path)
    _crash_at_commit(own_broker, "commit.queued", credential, dataset, path)
    with BrokerClient(own_broker.url, credential) as client:
        status = client.batch_status(dataset, manifest.batch_id)
        assert status.state is BatchState.RECEIVING  # nothing of it committed
        assert _held(own_broker, domain, f"{org}/{dataset}") == 0
        # Another batch behind it in the queue is not held up by it.
        other = tmp_path / "other.tsb"
        second = make_batch(
            other,
            dataset=dataset,
            refs=random_refs(30, seed=12),
            tokens=random_tokens(30, 2, seed=12),
            chunk_size=10,
            domain=domain,
        )
        assert client.upload(other, poll=0.05).state is BatchState.LINKED
        assert _held(own_broker, domain, f"{org}/{dataset}") == 30
        final = client.upload(path, poll=0.05)  # the SDK's rerun: commit again
        assert final.state is BatchState.LINKED
        assert second.batch_id != manifest.batch_id
    assert _held(own_broker, domain, f"{org}/{dataset}") == 150
    assert len(_commit_entries(own_broker, f"{org}/{dataset}")) == 2
