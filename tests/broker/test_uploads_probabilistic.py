"""The probabilistic stage end to end over real HTTP: upload, ingest, link, read back.

Two organisations upload extracts tokenised with ``uk-health-probabilistic`` to a real
broker (uvicorn, its own redis-server); the broker re-keys the evidence at rest, stores
it with each record, fits the model and links what the exact cascade missed.
"""

from __future__ import annotations

import itertools

import pytest

from broker.link_quality import link_qualities, probability_band
from broker.linkage_report import build_linkage_report
from broker.store import keyspace
from broker.store.linkage_evidence import decode_evidence
from broker.store.linkage_store import LinkageStore
from client_sdk.client import BrokerClient
from keys.batch import BatchManifest, BatchWriter
from keys.wire import BatchState, DatasetDeclaration
from tests.support.evidence_world import world
from tests.support.harness import unique


@pytest.fixture(scope="module")
def linked(broker_server, tmp_path_factory):
    """Both extracts uploaded by their own organisations and linked: (scope, clients)."""
    w = world()
    domain = unique("prob")
    tmp = tmp_path_factory.mktemp("prob-upload")
    clients = []
    for dataset, chunk in sorted(w.chunks.items()):
        _, credential = broker_server.add_org()
        client = BrokerClient(broker_server.url, credential, backoff=0.01)
        name = dataset.replace("/", "-")
        client.declare_dataset(
            DatasetDeclaration(
                name=name,
                one_record_per_person=True,
                domain=domain,
                spec_hash=w.spec.content_hash,
                key_version="v1",
                match_keys=[k.name for k in w.spec.match_keys],
                payload_columns=[],
            )
        )
        path = tmp / f"{name}.tsb"
        with BatchWriter(path) as writer:
            writer.write_chunk(chunk)
            manifest = BatchManifest(
                batch_id=unique("b"),
                dataset=name,
                domain=domain,
                key_version="v1",
                spec_hash=w.spec.content_hash,
                match_keys=[k.name for k in w.spec.match_keys],
                payload_columns=[],
                record_count=len(chunk),
                chunk_digests=writer.chunk_digests,
                created_at="2026-12-03T00:00:00+00:00",
            )
            writer.finish(manifest)
        status = client.upload(path, poll=0.05)
        assert status.state is BatchState.LINKED
        clients.append(client)
    yield domain
    for client in clients:
        client.close()


def test_uploads_link_probabilistically_through_the_broker(broker_server, linked) -> None:
    store = LinkageStore(broker_server.runtime.store.redis, scope=linked)
    model = store.fitted_model()
    assert model is not None
    assert [b.name for b in model.layout.blocks] == [b.name for b in world().spec.blocking_keys]
    persons = [store.person_record_numbers(pid) for pid, _ in store.iter_persons()]
    bases = store.link_basis([rid for rids in persons for rid in rids])
    probabilistic = [b for b in bases.values() if b.kind == "probabilistic"]
    assert probabilistic
    names = [b.name for b in model.layout.blocks]
    assert all(  # each at or above the threshold of the key it linked by
        b.probability is not None
        and b.blocking_key is not None
        and b.probability >= model.thresholds.link_of(names.index(b.blocking_key))
        for b in probabilistic
    )
    truth = world().person
    for _, records in store.iter_persons():  # every link the broker made is a true one
        assert (
            len(
                {
                    truth[(r.dataset.split("/", 1)[1].replace("-", "/", 1), bytes(r.ref))]
                    for r in records
                }
            )
            == 1
        )


def test_the_evidence_is_stored_only_in_its_at_rest_form(broker_server, linked) -> None:
    """No block token or comparison token is stored as the SDK sent it."""
    client = broker_server.runtime.store.redis
    store = LinkageStore(client, scope=linked)
    chunks = list(world().chunks.values())
    evidence = [c.evidence for c in chunks if c.evidence is not None]
    assert len(evidence) == len(chunks)
    sent_blocks = {
        bytes(t)[:10] for e in evidence for row in e.blocks for t in row if t is not None
    }
    sent_cells = {
        bytes(chunk.refs[i]): cells
        for chunk, e in zip(chunks, evidence, strict=True)
        for i, cells in enumerate(e.cells())
    }
    pattern = keyspace.linkage_base(linked).replace("{", "\\{").replace("}", "\\}")
    stored = 0
    refs = {}
    for record in itertools.chain.from_iterable(
        itertools.chain.from_iterable(store.iter_dataset_records(d.id))
        for d in store.datasets().values()
    ):
        refs[record.rid] = bytes(record.ref)
    for key in client.scan_iter(match=pattern + keyspace.LINK_EVIDENCE + ":*"):
        bucket = key[len(keyspace.linkage_base(linked).encode()) + 2 :]
        for low, raw in client.hgetall(key).items():
            rid = int.from_bytes(bucket + low, "big")
            blocks, cells = decode_evidence(raw)
            assert not {b for b in blocks if b is not None} & sent_blocks
            sent = sent_cells[refs[rid]]
            assert len(cells) == len(sent)
            for mine, theirs in zip(cells, sent, strict=True):
                assert len(mine) == len(theirs)
                assert not (mine and set(mine) == set(theirs))
            stored += 1
    assert stored == sum(len(c) for c in world().chunks.values())


def test_report_releases_and_review_read_the_stage(broker_server, linked) -> None:
    """The linkage report's section, the link-quality bands and the review file are fed
    by what the engine stored: its model, its linked pairs and its possible matches."""
    store = LinkageStore(broker_server.runtime.store.redis, scope=linked)
    model = store.fitted_model()
    assert model is not None
    section = next(
        d for d in build_linkage_report(broker_server.runtime.store).domains if d.domain == linked
    )
    assert section.probabilistic is not None
    pairs = store.scored_pairs()
    assert section.probabilistic.scored_pairs == len(pairs) > 0
    assert section.probabilistic.thresholds.link == model.thresholds.link
    assert [k.link_threshold for k in section.probabilistic.blocking_keys] == [
        model.thresholds.link_of(j) for j in range(len(model.blocks))
    ]
    persons = [store.person_record_numbers(pid) for pid, _ in store.iter_persons()]
    bases = store.link_basis([rid for rids in persons for rid in rids])
    probabilities = store.link_probabilities()
    linked_by_stage = {rid for rid, b in bases.items() if b.kind == "probabilistic"}
    assert linked_by_stage and linked_by_stage <= probabilities.keys()
    qualities = link_qualities(
        store, [d.id for d in store.datasets().values()], probabilities=probabilities
    )
    refs = {
        r.rid: (d.id, bytes(r.ref))
        for d in store.datasets().values()
        for records in store.iter_dataset_records(d.id)
        for r in records
    }
    for rid in linked_by_stage:
        assert qualities.of(*refs[rid]) == probability_band(probabilities[rid])
    possible = {(p.left, p.right) for p in store.scored_pairs(linked=False)}
    assert possible == {
        (min(m.record, m.other), max(m.record, m.other)) for m in store.possible_matches()
    }
