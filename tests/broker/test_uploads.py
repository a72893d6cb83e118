"""The upload protocol over real HTTP: chunks, resume, idempotence, commit, linkage."""

from __future__ import annotations

import dataclasses

import pytest

from broker.audit import read_audit, verify_chain
from broker.linkage import Linker
from broker.store import keyspace
from broker.store.linkage_store import LinkageStore
from client_sdk.client import BrokerClient, UploadProgress
from client_sdk.errors import BrokerCallError
from keys.batch import BatchReader
from keys.chunk import decode_chunk
from keys.derive import RecordRef
from keys.wire import BatchMode, BatchState, DatasetDeclaration
from tests.support.harness import make_batch, random_refs, random_tokens, unique

DOMAIN = unique("dom")


def _refs(n: int, seed: int) -> list[RecordRef]:
    return random_refs(n, seed=seed)


@pytest.fixture
def org_dataset(broker_server):
    """An org with a declared dataset: (client, dataset name, credential)."""
    _, credential = broker_server.add_org()
    name = unique("ds")
    client = BrokerClient(broker_server.url, credential, backoff=0.01)
    client.declare_dataset(
        DatasetDeclaration(
            name=name,
            one_record_per_person=True,
            domain=DOMAIN,
            spec_hash="spec-test-1",
            key_version="v1",
            match_keys=["nhs", "name_dob"],
            payload_columns=["age_band"],
        )
    )
    yield client, name, credential
    client.close()


def _batch(tmp_path, name, n=120, seed=1, **kw):
    path = tmp_path / f"{unique('batch')}.tsb"
    refs = _refs(n, seed)
    manifest = make_batch(
        path,
        dataset=name,
        refs=refs,
        tokens=random_tokens(n, 2, seed=seed),
        payload=[(str(i % 7),) for i in range(n)],
        payload_columns=["age_band"],
        chunk_size=25,
        **{"domain": DOMAIN, **kw},
    )
    return path, manifest


def test_upload_commit_and_link(broker_server, org_dataset, tmp_path):
    client, name, _ = org_dataset
    path, manifest = _batch(tmp_path, name)
    events: list[UploadProgress] = []
    status = client.upload(path, on_progress=events.append, poll=0.05)
    assert status.state is BatchState.LINKED
    assert status.chunks_linked == status.chunk_count == 5
    assert status.records_received == 120
    assert events[-1].phase == "link"
    assert any(e.phase == "upload" and e.done == 5 for e in events)
    store = broker_server.runtime.store
    batch_key = f"{client.whoami().name}/{name}/{manifest.batch_id}"
    assert not store.redis.exists(keyspace.batch_chunks(batch_key))
    assert client.dataset(name).batches == 1


def test_chunks_are_stored_rekeyed_never_as_received(broker_server, org_dataset, tmp_path):
    client, name, _ = org_dataset
    path, manifest = _batch(tmp_path, name, n=30)
    client.open_batch(name, manifest)
    raw = next(BatchReader(path).raw_chunks())
    client.put_chunk(name, manifest.batch_id, 0, raw)
    batch_key = f"{client.whoami().name}/{name}/{manifest.batch_id}"
    stored = broker_server.runtime.store.redis.hget(keyspace.batch_chunks(batch_key), "0")
    received, at_rest = decode_chunk(raw), decode_chunk(stored)
    assert at_rest.refs == received.refs
    sent = {t for row in received.tokens for t in row if t}
    kept = {t for row in at_rest.tokens for t in row if t}
    assert sent and kept and not sent & kept
    assert len(kept) == len(sent)


def test_resend_is_stored_once_and_resume_sends_only_the_rest(org_dataset, tmp_path):
    client, name, _ = org_dataset
    path, manifest = _batch(tmp_path, name, n=100)
    chunks = list(BatchReader(path).raw_chunks())
    client.open_batch(name, manifest)
    first = client.put_chunk(name, manifest.batch_id, 0, chunks[0])
    again = client.put_chunk(name, manifest.batch_id, 0, chunks[0])
    client.put_chunk(name, manifest.batch_id, 2, chunks[2])
    assert not first.duplicate and again.duplicate
    status = client.open_batch(name, manifest)
    assert status.received == [0, 2]
    assert status.records_received == 50
    assert status.state is BatchState.RECEIVING
    final = client.upload(path, poll=0.05)
    assert final.state is BatchState.LINKED
    assert final.records_received == 100


def test_commit_of_an_incomplete_batch_is_refused(org_dataset, tmp_path):
    client, name, _ = org_dataset
    path, manifest = _batch(tmp_path, name, n=60)
    client.open_batch(name, manifest)
    client.put_chunk(name, manifest.batch_id, 0, next(BatchReader(path).raw_chunks()))
    with pytest.raises(BrokerCallError) as caught:
        client.commit(name, manifest.batch_id)
    assert caught.value.code == "batch_incomplete"
    assert client.batch_status(name, manifest.batch_id).state is BatchState.RECEIVING


def test_a_chunk_that_does_not_match_its_digest_is_refused(org_dataset, tmp_path):
    client, name, _ = org_dataset
    path, manifest = _batch(tmp_path, name, n=60)
    chunks = list(BatchReader(path).raw_chunks())
    client.open_batch(name, manifest)
    with pytest.raises(BrokerCallError) as caught:
        client.put_chunk(name, manifest.batch_id, 0, chunks[1])
    assert caught.value.code == "bad_chunk"
    with pytest.raises(BrokerCallError) as caught:
        client.put_chunk(name, manifest.batch_id, 9, chunks[1])
    assert caught.value.code == "bad_chunk"


@pytest.mark.parametrize(
    ("field", "value"),
    [("spec_hash", "spec-other"), ("domain", "other-domain"), ("key_version", "v2")],
)
def test_batch_under_another_spec_domain_or_version_is_refused(org_dataset, tmp_path, field, value):
    client, name, _ = org_dataset
    path, _ = _batch(tmp_path, name, n=10, **{field: value})
    with pytest.raises(BrokerCallError) as caught:
        client.upload(path)
    assert caught.value.code == "dataset_mismatch"
    assert caught.value.status == 409


def test_same_batch_id_with_another_manifest_is_a_conflict(org_dataset, tmp_path):
    client, name, _ = org_dataset
    _, manifest = _batch(tmp_path, name, n=10, batch_id="fixed-id")
    client.open_batch(name, manifest)
    _, other = _batch(tmp_path, name, n=20, seed=5, batch_id="fixed-id")
    with pytest.raises(BrokerCallError) as caught:
        client.open_batch(name, other)
    assert caught.value.code == "conflict"


def _held(broker_server, dataset_id):
    report = Linker(LinkageStore(broker_server.runtime.store.redis, scope=DOMAIN)).report()
    return next((d.records for d in report.datasets if d.id == dataset_id), 0)


def test_retract_and_replace_modes(broker_server, org_dataset, tmp_path):
    client, name, _ = org_dataset
    dataset_id = f"{client.whoami().name}/{name}"
    path, _ = _batch(tmp_path, name, n=50, seed=3)
    assert client.upload(path, poll=0.05).state is BatchState.LINKED
    assert _held(broker_server, dataset_id) == 50
    retract = tmp_path / "retract.tsb"
    make_batch(
        retract, dataset=name, refs=_refs(10, 3), tokens=[()] * 10, match_keys=(), domain=DOMAIN
    )
    done = client.upload(retract, mode=BatchMode.RETRACT, poll=0.05)
    assert done.state is BatchState.LINKED
    assert _held(broker_server, dataset_id) == 40
    snapshot, _ = _batch(tmp_path, name, n=30, seed=4)
    # 10 of 40 removed is over the 10% a replace may remove unconfirmed.
    replaced = client.upload(snapshot, mode=BatchMode.REPLACE, poll=0.05, confirm_replace=True)
    assert replaced.state is BatchState.LINKED
    assert _held(broker_server, dataset_id) == 30


def test_every_upload_call_is_audited_without_identifiers(broker_server, org_dataset, tmp_path):
    client, name, credential = org_dataset
    path, _ = _batch(tmp_path, name, n=40)
    client.upload(path, poll=0.05)
    store = broker_server.runtime.store
    entries = read_audit(store, count=100_000)
    assert verify_chain(entries) is None
    org = client.whoami().name
    mine = [e for e in entries if e.dataset == f"{org}/{name}"]
    actions = {e.action for e in mine}
    assert {
        "dataset.declare",
        "batch.chunk",
        "batch.commit.append",
        "batch.linked.append",
    } <= actions
    raw = b"".join(store.redis.lrange(keyspace.audit_log(), 0, -1))
    assert credential.encode() not in raw
    reader = BatchReader(path)
    for chunk in reader.chunks():
        for ref in chunk.refs:
            assert ref.hex().encode() not in raw and bytes(ref) not in raw


def test_tampering_with_the_audit_log_is_detected(broker_server):
    entries = read_audit(broker_server.runtime.store, count=100_000)
    assert len(entries) >= 1
    forged = list(entries)
    victim = forged[0]
    forged[0] = dataclasses.replace(victim, counts={"records": 999})
    assert verify_chain(forged) == victim.seq
