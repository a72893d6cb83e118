"""Releases and the linkage report never see half a batch (broker/visibility.py).

The broker links in slices of ``LINK_SLICE_RECORDS`` (100 here, so a 300-record batch is
three slices); the ``link.paused`` fault point holds the link worker after the first slice,
with a third of the batch written, until the broker is stopped.
"""

from __future__ import annotations

import random
import time

import pytest

from client_sdk.client import BrokerClient
from keys.derive import RecordRef, Token
from keys.wire import BatchState, Role
from tests.support.harness import make_batch, start_broker
from tests.support.release_world import HOSPITAL_PERSONS, World, build_world

NEW = 300


@pytest.fixture
def world(tmp_path):
    broker = start_broker(tmp_path / "broker", TESSERA_BROKER_LINK_SLICE_RECORDS="100")
    try:
        yield build_world(broker, tmp_path)
    finally:
        broker.stop()


def _hospital_rows(world: World, agreement_id: str) -> tuple[int, dict]:
    with world.broker.client(world.researcher_cred) as http:
        answer = http.post(
            f"/v1/agreements/{agreement_id}/cohort", json={"require": [f"{world.hosp}/pas"]}
        )
    return answer.status_code, answer.json()


def _report_records(world: World, admin: str) -> int:
    with world.broker.client(admin) as http:
        report = http.get("/v1/linkage/report").json()
    section = next(d for d in report["domains"] if d["domain"] == world.domain)
    return next(d["records"] for d in section["datasets"] if d["dataset"] == f"{world.hosp}/pas")


def _restart(world: World, **env: str) -> None:
    world.broker.stop()
    for name in ("TESSERA_BROKER_DEVELOPMENT", "TESSERA_BROKER_FAULT_POINT"):
        world.broker.env.pop(name, None)
    world.broker.env.update(env)
    world.broker.start()


def test_a_batch_being_linked_is_invisible_until_whole(world, tmp_path):
    agreement = world.agreement()
    admin = world.broker.add_identity(Role.ADMIN, f"ops-{world.domain}")
    status, cohort = _hospital_rows(world, agreement.id)
    assert status == 200 and len(cohort["rows"]) == len(HOSPITAL_PERSONS)
    assert _report_records(world, admin) == len(HOSPITAL_PERSONS)

    _restart(world, TESSERA_BROKER_DEVELOPMENT="1", TESSERA_BROKER_FAULT_POINT="link.paused")
    rng = random.Random(5)
    path = tmp_path / "more.tsb"
    manifest = make_batch(
        path,
        dataset="pas",
        refs=[RecordRef(rng.randbytes(16)) for _ in range(NEW)],
        tokens=[(Token(rng.randbytes(16)), Token(rng.randbytes(16))) for _ in range(NEW)],
        payload=[("1", "0")] * NEW,
        payload_columns=["AE", "ADM"],
        chunk_size=50,
        domain=world.domain,
    )
    with BrokerClient(world.broker.url, world.hosp_cred) as client:
        client.upload(path, wait=False)
        deadline = time.monotonic() + 60
        while True:
            batch = client.batch_status("pas", manifest.batch_id)
            if batch.state is BatchState.LINKING and batch.chunks_linked > 0:
                break
            assert time.monotonic() < deadline, batch
            time.sleep(0.05)
    assert 0 < batch.chunks_linked < batch.chunk_count  # a third of it is written

    status, body = _hospital_rows(world, agreement.id)
    assert status == 503 and body["code"] == "linkage_busy"  # never 140 of 340
    assert _report_records(world, admin) == len(HOSPITAL_PERSONS)  # as before the batch

    _restart(world)  # the worker resumes and finishes the batch
    with BrokerClient(world.broker.url, world.hosp_cred) as client:
        final = client.wait_linked("pas", manifest.batch_id, timeout=60, poll=0.05)
    assert final.state is BatchState.LINKED
    status, cohort = _hospital_rows(world, agreement.id)
    assert status == 200 and len(cohort["rows"]) == len(HOSPITAL_PERSONS) + NEW
    assert _report_records(world, admin) == len(HOSPITAL_PERSONS) + NEW
