"""SIGKILL one of the broker's processes mid-work: the others carry on, and linkage ends
exactly as an uninterrupted run of the same batches ends.

- ``serve --workers 2``: an API process killed mid-upload; the upload goes on against the
  other (the supervisor starts a replacement beside it).
- two ``link-worker`` processes: the one linking a domain is killed mid-batch; the other
  takes the domain over once its lease has run out and finishes the batch.

Each test starts its own broker, since it kills its processes.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from broker.store.leases import scope_holder
from client_sdk.client import BrokerClient, UploadProgress
from keys.batch import BatchManifest, BatchReader
from keys.wire import BatchState, DatasetDeclaration
from tests.support.harness import (
    BrokerProcess,
    make_batch,
    random_refs,
    random_tokens,
    start_serving,
    unique,
)
from tests.support.worker_support import (
    api_processes,
    start_link_worker,
    wait_until,
    world_persons,
)

_LEASE = "3"
"""Scope lease (seconds) of these brokers: a dead worker's domain is taken over after it."""


def _world(tmp_path: Path, tag: str, domain: str) -> tuple[Path, Path]:
    """A GP batch (400 records) and a hospital batch (400, 300 of them the GP's people)."""
    gp_rows = random_tokens(400, 2, seed=1)
    hospital_rows = gp_rows[:300] + random_tokens(100, 2, seed=3)
    gp, hospital = tmp_path / f"{tag}-gp.tsb", tmp_path / f"{tag}-hospital.tsb"
    make_batch(gp, dataset="gp", refs=random_refs(400, seed=1), tokens=gp_rows, domain=domain)
    make_batch(
        hospital,
        dataset="hospital",
        refs=random_refs(400, seed=2),
        tokens=hospital_rows,
        domain=domain,
    )
    return gp, hospital


def _declare(broker: BrokerProcess, credential: str, domain: str, manifest: BatchManifest) -> None:
    with BrokerClient(broker.url, credential) as client:
        for name in ("gp", "hospital"):
            client.declare_dataset(
                DatasetDeclaration(
                    name=name,
                    one_record_per_person=True,
                    domain=domain,
                    spec_hash=manifest.spec_hash,
                    key_version=manifest.key_version,
                    match_keys=manifest.match_keys,
                )
            )


def _clean_run(broker: BrokerProcess, tmp_path: Path) -> set[frozenset[tuple[str, bytes]]]:
    """The persons of the same two batches uploaded and linked with nothing killed."""
    _, credential = broker.add_org()
    domain = unique("clean")
    gp, hospital = _world(tmp_path, "clean", domain)
    _declare(broker, credential, domain, _manifest(gp))
    with BrokerClient(broker.url, credential) as client:
        assert client.upload(gp, poll=0.05).state is BatchState.LINKED
        assert client.upload(hospital, poll=0.05).state is BatchState.LINKED
    return world_persons(broker.runtime.store, domain)


def _manifest(path: Path) -> BatchManifest:
    return BatchReader(path).manifest


def test_an_api_process_killed_mid_upload_leaves_the_upload_to_the_other(tmp_path):
    broker = start_serving(tmp_path / "broker", ("--workers", "2"), {})
    worker = start_link_worker(broker, "link-worker")
    try:
        assert broker.process is not None
        supervisor = broker.process.pid
        wait_until(lambda: len(api_processes(supervisor)) == 2, "two API processes")
        before = api_processes(supervisor)
        _, credential = broker.add_org()
        domain = unique("dom")
        gp, hospital = _world(tmp_path, "killed", domain)
        _declare(broker, credential, domain, _manifest(gp))
        killed: list[int] = []

        def kill_one(progress: UploadProgress) -> None:
            if progress.phase == "upload" and progress.done == 3 and not killed:
                killed.append(before[0])
                os.kill(before[0], signal.SIGKILL)

        with BrokerClient(broker.url, credential, backoff=0.1, retries=8) as client:
            assert client.upload(gp, poll=0.05).state is BatchState.LINKED
            final = client.upload(hospital, poll=0.05, on_progress=kill_one)
        assert killed, "the upload ended before an API process was killed"
        assert final.state is BatchState.LINKED
        assert final.records_received == 400
        # The supervisor replaced the dead process; the survivor kept serving.
        wait_until(
            lambda: (
                len(api_processes(supervisor)) == 2 and killed[0] not in api_processes(supervisor)
            ),
            "a replacement API process",
        )
        assert before[1] in api_processes(supervisor)
        assert world_persons(broker.runtime.store, domain) == _clean_run(broker, tmp_path)
    finally:
        worker.stop()
        broker.stop()


def test_a_link_worker_killed_mid_batch_hands_its_domain_to_the_other(tmp_path):
    broker = start_serving(
        tmp_path / "broker",
        ("--no-link-worker",),
        {"TESSERA_BROKER_LINK_LEASE_SECONDS": _LEASE, "TESSERA_BROKER_LINK_SLICE_RECORDS": "50"},
    )
    first = start_link_worker(broker, "first")
    paused = None
    second = None
    try:
        _, credential = broker.add_org()
        domain = unique("dom")
        gp, hospital = _world(tmp_path, "killed", domain)
        manifest = _manifest(hospital)
        _declare(broker, credential, domain, manifest)
        with BrokerClient(broker.url, credential) as client:
            assert client.upload(gp, poll=0.05).state is BatchState.LINKED
        first.stop()  # gives its lease back at once
        # This worker links the hospital batch's first slice, then holds there (renewing
        # its lease) until it is killed.
        paused = start_link_worker(
            broker,
            "paused",
            TESSERA_BROKER_DEVELOPMENT="1",
            TESSERA_BROKER_FAULT_POINT="link.paused",
        )
        with BrokerClient(broker.url, credential) as client:
            client.upload(hospital, wait=False)

            def part_linked() -> bool:
                status = client.batch_status("hospital", manifest.batch_id)
                return status.state is BatchState.LINKING and status.chunks_linked >= 1

            wait_until(part_linked, "the first slice to be linked")
            assert scope_holder(broker.runtime.store, domain) == paused.owner
            second = start_link_worker(broker, "second")
            # It cannot take a domain whose lease is alive: the batch stays half linked.
            status = client.batch_status("hospital", manifest.batch_id)
            assert status.state is BatchState.LINKING
            assert scope_holder(broker.runtime.store, domain) == paused.owner
            paused.kill()
            final = client.wait_linked("hospital", manifest.batch_id, timeout=60, poll=0.05)
        assert final.state is BatchState.LINKED
        assert final.chunks_linked == final.chunk_count
        assert "lost the scope lease" not in second.log_text()
        assert world_persons(broker.runtime.store, domain) == _clean_run(broker, tmp_path)
    finally:
        for process in (first, paused, second):
            if process is not None:
                process.stop()
        broker.stop()
