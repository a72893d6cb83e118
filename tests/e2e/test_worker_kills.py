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


def test_two_link_workers_link_two_domains_and_sigterm_hands_a_domain_over(tmp_path):
    """One worker holds domain X (paused halfway); the other links domain Y meanwhile.
    Stopped with SIGTERM, the first gives X back at once: with a lease of ten minutes, the
    other could not otherwise take X over within the test's wait."""
    broker = start_serving(
        tmp_path / "broker",
        ("--no-link-worker",),
        {"TESSERA_BROKER_LINK_LEASE_SECONDS": "600", "TESSERA_BROKER_LINK_SLICE_RECORDS": "50"},
    )
    paused = other = None
    try:
        (_, x_org), (_, y_org) = broker.add_org(), broker.add_org()
        x, y = unique("x"), unique("y")
        x_gp, _ = _world(tmp_path, "x", x)
        y_gp, _ = _world(tmp_path, "y", y)
        _declare(broker, x_org, x, _manifest(x_gp))
        _declare(broker, y_org, y, _manifest(y_gp))
        paused = start_link_worker(
            broker,
            "paused",
            TESSERA_BROKER_DEVELOPMENT="1",
            TESSERA_BROKER_FAULT_POINT="link.paused",
        )
        with BrokerClient(broker.url, x_org) as x_client:
            x_batch = x_client.upload(x_gp, wait=False).batch_id

            def x_part_linked() -> bool:
                status = x_client.batch_status("gp", x_batch)
                return status.state is BatchState.LINKING and status.chunks_linked >= 1

            wait_until(x_part_linked, "the first slice of domain x")
            assert scope_holder(broker.runtime.store, x) == paused.owner
            other = start_link_worker(broker, "other")
            with BrokerClient(broker.url, y_org) as y_client:
                y_final = y_client.upload(y_gp, poll=0.05)
            assert y_final.state is BatchState.LINKED  # linked while x stays taken
            assert x_client.batch_status("gp", x_batch).state is BatchState.LINKING
            assert scope_holder(broker.runtime.store, x) == paused.owner
            paused.stop()  # SIGTERM: it stops after its slice and gives x back
            x_final = x_client.wait_linked("gp", x_batch, timeout=120, poll=0.05)
        assert x_final.state is BatchState.LINKED
        assert scope_holder(broker.runtime.store, x) != paused.owner
        assert len(world_persons(broker.runtime.store, x)) == 400
        assert len(world_persons(broker.runtime.store, y)) == 400
    finally:
        for process in (paused, other):
            if process is not None:
                process.stop()
        broker.stop()
