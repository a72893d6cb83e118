"""Key rotation on a real broker over HTTP: rekey batches, the switch, person ids kept.

Tokens here are random bytes standing for what two key versions give: the same people
share a token under either version, and no token of one version equals one of the other.
"""

from __future__ import annotations

import dataclasses
import json
import random
import time
from collections import defaultdict

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.audit import read_audit
from broker.rotation import _switch, assign_person_ids
from broker.store import keyspace
from broker.store.linkage_store import LinkageStore
from broker.store.rotation_store import RotationState, active_scope, get_rotation, person_changes
from client_sdk.client import BrokerClient
from client_sdk.errors import BrokerCallError
from keys.derive import Token
from keys.wire import BatchMode, BatchState, DatasetDeclaration, Role
from tests.support.harness import make_batch, random_refs, start_broker, unique


def _tokens(n, *, seed, shared=()):
    """Two match keys; row i's key-0 token is ``shared[i]`` where given."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        first = shared[i] if i < len(shared) else Token(rng.randbytes(16))
        rows.append((first, Token(rng.randbytes(16))))
    return rows


class _World:
    """Two organisations, one dataset each, in one fresh domain."""

    def __init__(self, broker, tmp_path, *, n_a=40, n_b=30, overlap=20):
        self.broker, self.tmp = broker, tmp_path
        self.domain = unique("rot")
        self.orgs = {k: broker.add_org() for k in ("a", "b")}
        self.names = {k: unique("ds") for k in self.orgs}
        self.refs = {"a": random_refs(n_a, seed=1), "b": random_refs(n_b, seed=2)}
        self.overlap = overlap
        self.admin = broker.add_identity(Role.ADMIN, unique("admin"))

    def ident(self, key):
        return f"{self.orgs[key][0]}/{self.names[key]}"

    def client(self, key):
        return BrokerClient(self.broker.url, self.orgs[key][1])

    def batch(self, key, version, *, refs=None, shared=None, payload_seed=0, mode_tag=""):
        refs = self.refs[key] if refs is None else refs
        seed = f"{key}-{version}-{mode_tag}"
        people = random.Random(f"people-{version}")
        common = [Token(people.randbytes(16)) for _ in range(self.overlap)]
        tokens = _tokens(len(refs), seed=seed, shared=common if shared is None else shared)
        path = self.tmp / f"{key}-{version}-{unique('b')}.tsb"
        manifest = make_batch(
            path,
            dataset=self.names[key],
            refs=refs,
            tokens=tokens,
            payload=[(f"{key}-{bytes(ref).hex()[:8]}",) for ref in refs],
            payload_columns=("CODE",),
            chunk_size=16,
            domain=self.domain,
            key_version=version,
            org=self.orgs[key][0],
        )
        return path, manifest

    def declare_and_upload(self, key):
        path, manifest = self.batch(key, "v1")
        with self.client(key) as client:
            client.declare_dataset(
                DatasetDeclaration(
                    name=self.names[key],
                    one_record_per_person=True,
                    domain=self.domain,
                    spec_hash=manifest.spec_hash,
                    key_version="v1",
                    match_keys=manifest.match_keys,
                    payload_columns=manifest.payload_columns,
                )
            )
            assert client.upload(path, poll=0.05).state is BatchState.LINKED

    def upload(self, key, path, mode=BatchMode.REKEY):
        with self.client(key) as client:
            return client.upload(path, mode=mode, poll=0.05)

    def persons(self):
        """Person id -> the (dataset, reference, payload) of its records, as releases read."""
        store = self.broker.runtime.store
        linkage = LinkageStore(store.redis, scope=active_scope(store, self.domain))
        return {
            pid: sorted((r.dataset, bytes(r.ref), r.payload) for r in records)
            for pid, records in linkage.iter_persons()
        }

    def report(self):
        with self.broker.client(self.admin) as http:
            response = http.get("/v1/linkage/report")
        assert response.status_code == 200, response.text
        return next(d for d in response.json()["domains"] if d["domain"] == self.domain)

    def wait_done(self, timeout=60.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rotation = self.report()["rotation"]
            if rotation and rotation["state"] == "done":
                return rotation
            time.sleep(0.1)
        raise AssertionError(f"the rotation did not finish: {self.report()['rotation']}")

    def scope_keys(self, scope):
        pattern = keyspace.linkage_base(scope).replace("{", "\\{").replace("}", "\\}") + "*"
        return list(self.broker.runtime.store.redis.scan_iter(match=pattern))

    def actions(self):
        entries = read_audit(self.broker.runtime.store, start=0, count=1_000_000)
        return [e for e in entries if self.domain in e.dataset or e.dataset in self.idents()]

    def idents(self):
        return {self.ident(k) for k in self.orgs}


def test_a_full_rotation_keeps_every_person_and_deletes_the_old_tokens(broker_server, tmp_path):
    world = _World(broker_server, tmp_path)
    world.declare_and_upload("a")
    world.declare_and_upload("b")
    before = world.persons()
    assert sum(1 for records in before.values() if len(records) == 2) == world.overlap
    assert world.report()["rotation"] is None

    # The second organisation moves first (so v2 numbers persons in another order):
    # releases still read v1, persons unchanged.
    path_b, _ = world.batch("b", "v2")
    assert world.upload("b", path_b).state is BatchState.LINKED
    assert active_scope(world.broker.runtime.store, world.domain) == world.domain
    assert world.persons() == before
    rotation = world.report()["rotation"]
    assert rotation == {
        "from_version": "v1",
        "to_version": "v2",
        "state": "building",
        "datasets_moved": 1,
        "datasets_total": 2,
    }
    # A dataset that has moved takes nothing else until the switch.
    append_b, _ = world.batch("b", "v1", refs=random_refs(3, seed=8), mode_tag="late")
    with pytest.raises(BrokerCallError) as refused:
        world.upload("b", append_b, mode=BatchMode.APPEND)
    assert refused.value.code == "dataset_mismatch"
    assert "has moved to key version v2" in str(refused.value)
    assert "\n" not in str(refused.value)

    # A dataset that has not moved still takes batches under v1.
    append_a, _ = world.batch("a", "v1", refs=random_refs(3, seed=9), shared=[], mode_tag="late")
    assert world.upload("a", append_a, mode=BatchMode.APPEND).state is BatchState.LINKED
    grown = world.persons()
    assert len(grown) == len(before) + 3
    before = grown

    # Then the first moves (the extract now with its three new records): the broker
    # switches, keeping every person id.
    world.refs["a"] = [*world.refs["a"], *random_refs(3, seed=9)]
    path_a, _ = world.batch("a", "v2")
    assert world.upload("a", path_a).state is BatchState.LINKED
    assert world.wait_done()["datasets_moved"] == 2
    assert active_scope(world.broker.runtime.store, world.domain) == f"{world.domain}@v2"
    assert world.persons() == before
    assert world.scope_keys(world.domain) == []  # every v1 token, record and person gone
    assert world.scope_keys(f"{world.domain}@v2")
    assert person_changes(world.broker.runtime.store, world.domain) == []
    with world.client("a") as client:
        assert client.dataset(world.names["a"]).key_version == "v2"
    actions = [e.action for e in world.actions()]
    for step in ("rotation.started", "rotation.switched", "rotation.finished"):
        assert actions.count(step) == 1, step
    assert actions.count("rotation.moved") == 2
    assert actions.count("batch.linked.rekey") == 2

    # After the switch, v2 is the dataset's version like any other.
    late, _ = world.batch("a", "v2", refs=random_refs(3, seed=19), shared=[], mode_tag="late")
    assert world.upload("a", late, mode=BatchMode.APPEND).state is BatchState.LINKED
    assert len(world.persons()) == len(before) + 3
    old_v1, _ = world.batch("a", "v1", refs=random_refs(2, seed=10), mode_tag="old")
    with pytest.raises(BrokerCallError) as refused:
        world.upload("a", old_v1, mode=BatchMode.APPEND)
    assert refused.value.code == "dataset_mismatch" and "key version" in str(refused.value)


def test_a_rekey_batch_with_other_references_is_refused_and_changes_nothing(
    broker_server, tmp_path
):
    world = _World(broker_server, tmp_path)
    world.declare_and_upload("a")
    for refs in (world.refs["a"][:-1], [*world.refs["a"], *random_refs(1, seed=77)]):
        path, manifest = world.batch("a", "v2", refs=refs)
        with pytest.raises(BrokerCallError) as refused:
            world.upload("a", path)
        message = str(refused.value)
        assert refused.value.code == "dataset_mismatch" and "\n" not in message
        assert "references differ" in message and "nothing was changed" in message
        with world.client("a") as client:
            status = client.batch_status(world.names["a"], manifest.batch_id)
        assert status.state is BatchState.RECEIVING
    assert world.report()["rotation"] is None  # no rotation was started
    # A rekey batch under the version the dataset holds is refused at open.
    same, _ = world.batch("a", "v1", mode_tag="again")
    with pytest.raises(BrokerCallError) as refused:
        world.upload("a", same)
    assert "already holds" in str(refused.value)


def test_merges_keep_the_older_id_and_splits_are_recorded(broker_server, tmp_path):
    world = _World(broker_server, tmp_path, n_a=6, n_b=6, overlap=0)
    people = random.Random("v1-people")
    # v1: a0~b0 not linked (distinct tokens); a1~b1 linked.
    v1_shared = [Token(people.randbytes(16)) for _ in range(2)]
    v1_a = [v1_shared[1] if i == 1 else None for i in range(6)]
    v1_b = [v1_shared[1] if i == 1 else None for i in range(6)]
    for key, shared in (("a", v1_a), ("b", v1_b)):
        rows = [(s or Token(people.randbytes(16)), Token(people.randbytes(16))) for s in shared]
        path = tmp_path / f"{key}-v1.tsb"
        manifest = make_batch(
            path, dataset=world.names[key], refs=world.refs[key], tokens=rows,
            domain=world.domain, key_version="v1", org=world.orgs[key][0],
        )  # fmt: skip
        with world.client(key) as client:
            client.declare_dataset(
                DatasetDeclaration(
                    name=world.names[key], one_record_per_person=True, domain=world.domain,
                    spec_hash=manifest.spec_hash, key_version="v1",
                    match_keys=manifest.match_keys,
                )
            )  # fmt: skip
            assert client.upload(path, poll=0.05).state is BatchState.LINKED
    before = world.persons()
    pid_of = {rec[:2]: pid for pid, recs in before.items() for rec in recs}
    a0, b0 = (world.ident("a"), world.refs["a"][0]), (world.ident("b"), world.refs["b"][0])
    a1, b1 = (world.ident("a"), world.refs["a"][1]), (world.ident("b"), world.refs["b"][1])
    assert pid_of[a1] == pid_of[b1] and pid_of[a0] != pid_of[b0]
    # v2: a0~b0 now linked (a merge), a1~b1 no longer (a split).
    merged = Token(people.randbytes(16))
    for key in ("a", "b"):
        rows = [
            (merged if i == 0 else Token(people.randbytes(16)), Token(people.randbytes(16)))
            for i in range(6)
        ]
        path = tmp_path / f"{key}-v2.tsb"
        make_batch(
            path, dataset=world.names[key], refs=world.refs[key], tokens=rows,
            domain=world.domain, key_version="v2", org=world.orgs[key][0],
        )  # fmt: skip
        assert world.upload(key, path).state is BatchState.LINKED
    world.wait_done()
    after = world.persons()
    now_of = {rec[:2]: pid for pid, recs in after.items() for rec in recs}
    assert now_of[a0] == now_of[b0] == min(pid_of[a0], pid_of[b0])
    assert now_of[a1] == pid_of[a1]  # the part holding the earliest record keeps the id
    assert now_of[b1] > max(pid_of.values())  # the other part: a new id, never reused
    for key in set(pid_of) - {a0, b0, a1, b1}:
        assert now_of[key] == pid_of[key]
    changes = [json.loads(c) for c in person_changes(world.broker.runtime.store, world.domain)]
    assert sorted(changes, key=lambda c: c["kind"]) == [
        {
            "kind": "merge",
            "kept": min(pid_of[a0], pid_of[b0]),
            "other": max(pid_of[a0], pid_of[b0]),
        },
        {"kind": "split", "kept": pid_of[a1], "other": now_of[b1]},
    ]
    switched = next(e for e in world.actions() if e.action == "rotation.switched")
    assert switched.counts["persons_merged"] == 1 and switched.counts["persons_split"] == 1
    # A broker process that saw the rotation still switching, and got the lock only after
    # the switch, must leave the new linkage alone.
    store = world.broker.runtime.store
    done = get_rotation(store, world.domain)
    assert done is not None and done.state is RotationState.DONE
    stale = dataclasses.replace(done, state=RotationState.SWITCHING, active=world.domain)
    _switch(world.broker.runtime, stale, lambda point: None)
    assert world.persons() == after
    assert [e.action for e in world.actions()].count("rotation.switched") == 1
    assert len(person_changes(store, world.domain)) == 2  # the review list is kept


@pytest.mark.parametrize("point", ["rotation.carried", "rotation.switched"])
def test_a_crash_mid_switch_shows_v1_or_v2_whole_then_finishes(point, tmp_path):
    broker = start_broker(tmp_path / "broker")
    try:
        world = _World(broker, tmp_path)
        world.declare_and_upload("a")
        world.declare_and_upload("b")
        before = world.persons()
        path_a, _ = world.batch("a", "v2")
        assert world.upload("a", path_a).state is BatchState.LINKED
        broker.stop()
        broker.env.update({"TESSERA_BROKER_DEVELOPMENT": "1", "TESSERA_BROKER_FAULT_POINT": point})
        broker.start()
        path_b, _ = world.batch("b", "v2")
        with world.client("b") as client:
            client.upload(path_b, mode=BatchMode.REKEY, wait=False)
        assert broker.process is not None
        assert broker.process.wait(60) == 70  # it died at the fault point, as a crash would
        broker.process = None
        broker.close_runtime()
        store = broker.runtime.store
        scope = active_scope(store, world.domain)
        expected = world.domain if point == "rotation.carried" else f"{world.domain}@v2"
        assert scope == expected
        assert world.persons() == before  # whichever is visible is whole, and the same
        del broker.env["TESSERA_BROKER_FAULT_POINT"]
        broker.start()
        world.wait_done()
        assert world.persons() == before
        assert world.scope_keys(world.domain) == []
    finally:
        broker.stop()


def _groups():
    """New persons, each a list of (old person, old record) of its records."""
    records = st.lists(st.integers(1, 12), min_size=1, max_size=40)  # old pid of each record
    return records.flatmap(
        lambda pids: st.lists(st.integers(1, 15), min_size=len(pids), max_size=len(pids)).map(
            lambda new: _group(pids, new)
        )
    )


def _group(old_pids, new_pids):
    groups = defaultdict(list)
    for rid, (old, new) in enumerate(zip(old_pids, new_pids, strict=True), start=1):
        groups[new].append((old, rid))
    return dict(groups)


@given(_groups())
def test_assigned_ids_are_distinct_keep_old_ids_and_merges_keep_the_oldest(groups):
    old_top = max(old for members in groups.values() for old, _ in members)
    result = assign_person_ids(groups, old_top=old_top, new_top=max(groups))
    chosen = result.chosen
    assert sorted(chosen) == sorted(groups)
    assert len(set(chosen.values())) == len(chosen)  # no two persons share an id
    for pid, members in groups.items():
        olds = {old for old, _ in members}
        if chosen[pid] <= old_top:
            assert chosen[pid] in olds
    # An old id goes to the new person holding that old person's earliest record, and a
    # person given several keeps the oldest.
    earliest: dict[int, tuple[int, int]] = {}
    for pid, members in groups.items():
        for old, rid in members:
            if old not in earliest or rid < earliest[old][0]:
                earliest[old] = (rid, pid)
    for old, (_, pid) in earliest.items():
        assert chosen[pid] == min(o for o, (_, p) in earliest.items() if p == pid)
        assert chosen[pid] <= old
    # Every old id is kept by someone or recorded as merged into an older one.
    merged = {other for kind, _, other in result.changes if kind == "merge"}
    assert set(earliest) == (set(chosen.values()) & set(earliest)) | merged
    # Applying it again to its own result changes nothing.
    again = assign_person_ids(
        {chosen[p]: m for p, m in groups.items()}, old_top=old_top, new_top=result.top
    )
    assert all(again.chosen[v] == v for v in chosen.values())
