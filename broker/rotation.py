"""Key rotation end to end: rekey batches, a linkage built aside, and one atomic switch.

After ``tessera-keys domain rotate``, each organisation re-tokenises its extract under
the new key version and uploads it as a ``rekey`` batch to its existing dataset (same
references). The broker links those batches into a new linkage scope (``domain@vN``,
broker/store/rotation_store.py) while releases and ordinary linkage go on from the old
one. When every dataset of the domain holding records has moved, the link worker:

1. marks the rotation ``switching`` and carries person ids over
   (:func:`carry_person_ids`): each new person takes the old id of its records, a merge
   keeps the older id, a split gives the part that holds the person's earliest record the
   id and the others new ones, and every merge and split is recorded;
2. makes the new scope active with one write (``switched``): a reader sees the old scope
   or the new, never half of either;
3. moves every dataset declaration of the domain to the new key version, deletes the old
   scope (its tokens, records and persons) and marks the rotation ``done``.

A crash anywhere resumes at the step it stopped (:func:`resume_rotations`, at worker
start). Each step writes an audit entry. docs/key-ceremony.md ("Rotation") is the
operator's and organisations' guide; docs/api.md the protocol.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from broker.audit import append_audit
from broker.errors import DatasetMismatchError
from broker.runtime import BrokerRuntime, utc_now
from broker.store import batches as batch_store
from broker.store import rotation_store
from broker.store.client import Store
from broker.store.datasets import dataset_id, get_dataset, list_all_datasets, set_key_version
from broker.store.linkage_codec import StoredRecord, decode_members, next_id
from broker.store.linkage_mirror import WriteSet
from broker.store.linkage_store import LinkageStore
from broker.store.rotation_store import Rotation, RotationState
from keys.batch import BatchManifest
from keys.chunk import decode_chunk
from keys.wire import BatchMode, BatchState, DatasetInfoOut

__all__ = [
    "PersonAssignment",
    "PersonCarryOver",
    "RotationProgress",
    "assign_person_ids",
    "carry_person_ids",
    "check_batch",
    "check_rekey_commit",
    "finish_rotation",
    "linking_scope",
    "rekey_linked",
    "resume_rotations",
    "rotation_progress",
]

logger = logging.getLogger(__name__)

Fault = Callable[[str], None]


def _no_fault(point: str) -> None:
    """No crash test: every fault point passes."""


@dataclass(frozen=True, slots=True)
class RotationProgress:
    """How far a domain's rotation is (for the linkage report).

    Attributes:
        from_version: the key version datasets move from.
        to_version: the key version they move to.
        state: ``building``, ``switching``, ``switched`` or ``done``.
        datasets_moved: datasets whose rekey batch is linked.
        datasets_total: datasets that must move (those of the domain holding records).
    """

    from_version: str
    to_version: str
    state: str
    datasets_moved: int
    datasets_total: int


@dataclass(frozen=True, slots=True)
class PersonCarryOver:
    """What carrying person ids over did.

    Attributes:
        persons: persons of the new linkage.
        kept: persons that kept the id of all their records.
        merged: old ids merged into an older one (each recorded).
        split: new persons split off an old one, with a new id (each recorded).
    """

    persons: int
    kept: int
    merged: int
    split: int


# Checks at open and commit ----------------------------------------------------------------


def _ident(dataset: DatasetInfoOut) -> str:
    return dataset_id(dataset.org, dataset.name)


def check_batch(
    store: Store,
    dataset: DatasetInfoOut,
    *,
    manifest: BatchManifest,
    mode: BatchMode,
    batch_key: str,
) -> None:
    """Refuse a batch that does not fit the domain's rotation (at open and at commit).

    A ``rekey`` batch must be under a key version the dataset does not hold yet, the one
    the domain is moving to, and the dataset's only one (unless the one before failed to
    link). Any other batch of a dataset that has moved waits for the switch.

    Raises:
        DatasetMismatchError: one line naming what is wrong (never a value).
    """
    rotation = rotation_store.get_rotation(store, dataset.domain)
    running = rotation is not None and rotation.running
    ident = _ident(dataset)
    if mode is not BatchMode.REKEY:
        if rotation is not None and running and ident in rotation.rekeyed:
            raise DatasetMismatchError(
                f"dataset {dataset.name!r} has moved to key version {rotation.to_version}: "
                f"it takes no other batch until every dataset of {dataset.domain!r} has "
                "moved (the linkage report shows the rotation's progress)"
            )
        return
    if manifest.key_version == dataset.key_version:
        raise DatasetMismatchError(
            f"a rekey batch is tokenised under the domain's new key version, and this one "
            f"is under {manifest.key_version}, which dataset {dataset.name!r} already holds: "
            "accept the new version (tessera-sdk keys --accept) and tokenise again"
        )
    if rotation is None or not running:
        return
    if manifest.key_version != rotation.to_version:
        raise DatasetMismatchError(
            f"domain {dataset.domain!r} is moving to key version {rotation.to_version}, "
            f"not {manifest.key_version}"
        )
    held = rotation.rekeyed.get(ident)
    if held is not None and held != batch_key and not _failed(store, held):
        raise DatasetMismatchError(
            f"dataset {dataset.name!r} has already sent its rekey batch for {rotation.to_version}"
        )


def _failed(store: Store, batch_key: str) -> bool:
    batch = batch_store.get_batch(store, batch_key)
    return batch is None or batch.state is BatchState.FAILED


def _batch_refs(store: Store, record: batch_store.BatchRecord) -> set[bytes]:
    refs: set[bytes] = set()
    for index in range(record.chunk_count):
        chunk = decode_chunk(batch_store.read_chunk(store, record.batch_key, index))
        refs.update(bytes(ref) for ref in chunk.refs)
    return refs


def _unlinked_batches(store: Store, record: batch_store.BatchRecord) -> bool:
    """Whether another committed batch of the record's dataset is still to be linked."""
    for key in batch_store.queued_batches(store, limit=10_000):
        other = batch_store.get_batch(store, key)
        if (
            other is not None
            and key != record.batch_key
            and other.dataset == record.dataset
            and other.state in (BatchState.COMMITTED, BatchState.LINKING)
        ):
            return True
    return False


def check_rekey_commit(store: Store, record: batch_store.BatchRecord, *, now: str) -> None:
    """Before a batch's first commit: the rotation's checks; for ``rekey``, its references.

    A rekey batch must hold exactly the references its dataset holds (the same extract,
    tokenised again), once the dataset's earlier batches have linked. The first rekey
    batch of a domain starts its rotation.

    Raises:
        DatasetMismatchError: one line; nothing was changed, the chunks stay held.
    """
    org, _, name = record.dataset.partition("/")
    dataset = get_dataset(store, org=org, name=name)
    manifest = BatchManifest.model_validate_json(record.manifest_json)
    check_batch(store, dataset, manifest=manifest, mode=record.mode, batch_key=record.batch_key)
    if record.mode is not BatchMode.REKEY:
        return
    if _unlinked_batches(store, record):
        raise DatasetMismatchError(
            f"dataset {name!r} has batches still to be linked: commit the rekey batch "
            "once they are linked"
        )
    linkage = LinkageStore(store.redis, scope=rotation_store.active_scope(store, dataset.domain))
    held = {bytes(ref) for ref, _ in linkage.iter_dataset(record.dataset)}
    sent = _batch_refs(store, record)
    if held != sent:
        raise DatasetMismatchError(
            f"the rekey batch's references differ from those dataset {name!r} holds "
            f"({len(held - sent):,} held are missing, {len(sent - held):,} are new): "
            "tokenise the same extract under the new version; nothing was changed"
        )
    started = rotation_store.start_rotation(
        store,
        dataset.domain,
        from_version=dataset.key_version,
        to_version=manifest.key_version,
        now=now,
    )
    if started:
        _audit(
            store,
            "rotation.started",
            scope=rotation_store.target_scope(dataset.domain, manifest.key_version),
            dataset=record.dataset,
        )
    rotation_store.mark_rekey_committed(
        store, dataset.domain, dataset_id=record.dataset, batch_key=record.batch_key
    )


# Linking --------------------------------------------------------------------------------


def linking_scope(store: Store, record: batch_store.BatchRecord, *, domain: str) -> str:
    """The linkage scope a batch links into.

    A rekey batch, and any batch of a dataset declared under the new version while the
    domain rotates, go to the scope being built; everything else to the active one.
    """
    rotation = rotation_store.get_rotation(store, domain)
    if rotation is not None and rotation.running:
        if record.mode is BatchMode.REKEY:
            return rotation.target
        org, _, name = record.dataset.partition("/")
        if get_dataset(store, org=org, name=name).key_version == rotation.to_version:
            return rotation.target
    return rotation_store.active_scope(store, domain)


def _moved(store: Store, rotation: Rotation) -> tuple[set[str], set[str]]:
    """Dataset ids that have moved, and those that must move."""
    must: set[str] = set()
    moved: set[str] = set()
    for d in list_all_datasets(store):
        if d.domain != rotation.domain:
            continue
        ident = _ident(d)
        if d.key_version == rotation.to_version:
            moved.add(ident)  # declared under the new version: it links there already
            continue
        if d.key_version == rotation.from_version and d.batches:
            must.add(ident)
        batch_key = rotation.rekeyed.get(ident)
        if batch_key is not None:
            batch = batch_store.get_batch(store, batch_key)
            if batch is not None and batch.state is BatchState.LINKED:
                moved.add(ident)
    return moved & must, must


def rotation_progress(store: Store, domain: str) -> RotationProgress | None:
    """The domain's latest rotation and how many datasets have moved, or ``None``."""
    rotation = rotation_store.get_rotation(store, domain)
    if rotation is None:
        return None
    moved, must = _moved(store, rotation)
    if not rotation.running:
        moved = must = set(rotation.rekeyed)
    return RotationProgress(
        rotation.from_version, rotation.to_version, rotation.state.value, len(moved), len(must)
    )


def rekey_linked(
    runtime: BrokerRuntime, record: batch_store.BatchRecord, *, domain: str, fault: Fault
) -> None:
    """After a rekey batch is linked: audit the move, and switch once all have moved."""
    store = runtime.store
    rotation = rotation_store.get_rotation(store, domain)
    if rotation is None or not rotation.running:
        return
    moved, must = _moved(store, rotation)
    _audit(
        store,
        "rotation.moved",
        scope=rotation.target,
        dataset=record.dataset,
        counts={"datasets_moved": len(moved), "datasets_total": len(must)},
    )
    finish_rotation(runtime, domain, fault=fault)


def resume_rotations(runtime: BrokerRuntime, *, fault: Fault = _no_fault) -> None:
    """Carry on every rotation a crash (or a lost race) left short of ``done``."""
    store = runtime.store
    domains = sorted({d.domain for d in list_all_datasets(store)})
    for rotation in rotation_store.list_rotations(store, domains):
        if rotation.state is not RotationState.DONE:
            finish_rotation(runtime, rotation.domain, fault=fault)


# The switch -------------------------------------------------------------------------------


def finish_rotation(runtime: BrokerRuntime, domain: str, *, fault: Fault = _no_fault) -> bool:
    """Take the domain's rotation as far as it can go now; True when it is ``done``.

    Each step is idempotent and records its state before the next begins, so a crash at
    any point resumes here. ``fault`` names the crash tests' points.
    """
    store = runtime.store
    rotation = rotation_store.get_rotation(store, domain)
    if rotation is None:
        return False
    if rotation.state is RotationState.BUILDING:
        moved, must = _moved(store, rotation)
        if not must or moved != must:
            return False
        rotation_store.set_rotation_state(
            store, domain, state=RotationState.SWITCHING, now=utc_now()
        )
        rotation = _reload(store, domain)
    if rotation.state is RotationState.SWITCHING:
        _switch(runtime, rotation, fault)
        rotation = _reload(store, domain)
    if rotation.state is RotationState.SWITCHED:
        _finish(runtime, rotation)
        return True
    return rotation.state is RotationState.DONE


def _reload(store: Store, domain: str) -> Rotation:
    rotation = rotation_store.get_rotation(store, domain)
    assert rotation is not None  # a rotation's hash is never deleted
    return rotation


def _switch(runtime: BrokerRuntime, rotation: Rotation, fault: Fault) -> None:
    """Carry person ids over, then make the new scope active, under the old scope's lock."""
    store = runtime.store
    old = LinkageStore(store.redis, scope=rotation.active)
    token = old.acquire()  # no batch links into the old scope while it is read and left
    try:
        if _reload(store, rotation.domain).state is not RotationState.SWITCHING:
            return  # another broker process switched while this one waited for the lock
        result = carry_person_ids(store, rotation, old=old)
        fault("rotation.carried")
        # Audited before the switch, so whoever sees v2 also finds the entry (a crash in
        # between writes it again when the switch is taken up again).
        _audit(
            store,
            "rotation.switched",
            scope=rotation.target,
            counts={
                "persons": result.persons,
                "persons_kept": result.kept,
                "persons_merged": result.merged,
                "persons_split": result.split,
            },
        )
        rotation_store.switch_active_scope(store, rotation.domain, now=utc_now())
    finally:
        old.release(token)
    fault("rotation.switched")


def _finish(runtime: BrokerRuntime, rotation: Rotation) -> None:
    """Declarations to the new version, the old scope deleted, the rotation done."""
    store = runtime.store
    for d in list_all_datasets(store):
        if d.domain == rotation.domain and d.key_version == rotation.from_version:
            set_key_version(store, org=d.org, name=d.name, key_version=rotation.to_version)
    deleted = rotation_store.delete_scope(store, rotation.old) if rotation.old else 0
    _audit(store, "rotation.finished", scope=rotation.target, counts={"keys_deleted": deleted})
    rotation_store.set_rotation_state(
        store, rotation.domain, state=RotationState.DONE, now=utc_now()
    )
    logger.info("key rotation of a domain finished: %d old linkage keys deleted", deleted)


def carry_person_ids(store: Store, rotation: Rotation, *, old: LinkageStore) -> PersonCarryOver:
    """Give each person of the new scope the person id its records had in the old one.

    :func:`assign_person_ids` chooses; this reads both scopes, writes the new one in one
    atomic write (unseen by readers: the new scope is not active yet) and records every
    merge and split (``keyspace.rotation_changes``). Applying it again changes nothing.

    Args:
        store: the broker's store.
        rotation: the domain's rotation, ``switching``.
        old: the active scope, whose linkage lock the caller holds.
    """
    held = old.mirror
    old_names = {e.dsn: e.id for e in old.datasets().values()}
    before: dict[tuple[str, bytes], tuple[int, int]] = {}
    for rid, raw in held.records.items():
        r = StoredRecord.decode(rid, raw)
        before[(old_names.get(r.dsn, ""), r.ref)] = (r.pid, rid)
    new = LinkageStore(store.redis, scope=rotation.target)
    token = new.acquire()
    try:
        mirror = new.mirror
        names = {e.dsn: e.id for e in new.datasets().values()}
        members: dict[int, list[int]] = {
            pid: [rid for rid, _ in decode_members(raw)] for pid, raw in mirror.persons.items()
        }
        groups: dict[int, list[tuple[int, int]]] = {}
        for pid, rids in members.items():
            groups[pid] = []
            for rid in rids:
                record = StoredRecord.decode(rid, mirror.records[rid])
                was = before.get((names.get(record.dsn, ""), record.ref))
                if was is not None and was[0]:
                    groups[pid].append(was)
        assignment = assign_person_ids(groups, old_top=held.next_pid, new_top=mirror.next_pid)
        writes = _renumber(mirror.records, mirror.persons, members, assignment.chosen)
        if writes.persons:
            writes.meta["pid"] = max(assignment.top, mirror.next_pid)
            new.commit(writes)
    finally:
        new.release(token)
    changes = [
        json.dumps({"kind": kind, "kept": kept, "other": other}).encode()
        for kind, kept, other in assignment.changes
    ]
    rotation_store.save_person_changes(store, rotation.domain, changes)
    return PersonCarryOver(len(members), assignment.kept, assignment.merged, assignment.split)


@dataclass(frozen=True, slots=True)
class PersonAssignment:
    """The id each new person takes, and what changed.

    Attributes:
        chosen: new person id as linked -> the id it takes.
        changes: ``("merge", kept id, merged id)`` or ``("split", old id, new id)``.
        kept: persons whose records were all one old person, which keep its id.
        merged: old ids merged into an older one.
        split: new persons split off old ones, with a new id.
        top: the largest id taken.
    """

    chosen: dict[int, int]
    changes: list[tuple[str, int, int]]
    kept: int
    merged: int
    split: int
    top: int


def assign_person_ids(
    groups: Mapping[int, Sequence[tuple[int, int]]], *, old_top: int, new_top: int
) -> PersonAssignment:
    """Choose each new person's id from the old ids of its records (the engine's rules).

    An old person's id goes to the new person holding its earliest record (smallest old
    record number), as a dissolved person's id goes back to the first part re-formed. A
    new person given several old ids is a merge and keeps the oldest (smallest), as the
    engine's merges do. A new person given none takes a new id after every id either
    scope gave (none reused), unless it already has one past the old scope's (a rerun).

    Args:
        groups: new person id -> ``(old person id, old record number)`` of each of its
            records the old scope held.
        old_top: the last person id the old scope gave.
        new_top: the last person id the new scope gave.
    """
    heir: dict[int, tuple[int, int]] = {}  # old pid -> (earliest old rid, new pid)
    for pid in sorted(groups):
        for old_pid, old_rid in groups[pid]:
            if old_pid not in heir or old_rid < heir[old_pid][0]:
                heir[old_pid] = (old_rid, pid)
    inherits: dict[int, list[int]] = {pid: [] for pid in groups}
    for old_pid, (_, pid) in heir.items():
        inherits[pid].append(old_pid)
    fresh = max(old_top, new_top)
    chosen: dict[int, int] = {}
    changes: list[tuple[str, int, int]] = []
    kept = merged = split = 0
    for pid in sorted(groups):
        ids = sorted(inherits[pid])
        sources = sorted({old_pid for old_pid, _ in groups[pid]})
        if ids:
            chosen[pid] = ids[0]
            changes += [("merge", ids[0], gone) for gone in ids[1:]]
            merged += len(ids) - 1
            kept += sources == [ids[0]]
            continue
        if pid > old_top:
            chosen[pid] = pid
        else:
            fresh = next_id(fresh)
            chosen[pid] = fresh
        changes += [("split", source, chosen[pid]) for source in sources]
        split += bool(sources)
    return PersonAssignment(chosen, changes, kept, merged, split, max([fresh, *chosen.values()]))


def _renumber(
    records: dict[int, bytes],
    persons: dict[int, bytes],
    members: dict[int, list[int]],
    chosen: dict[int, int],
) -> WriteSet:
    """The writes that move each person to its chosen id (records carry their person)."""
    writes = WriteSet()
    moving = {pid: to for pid, to in chosen.items() if pid != to}
    for pid in moving:
        writes.persons[pid] = None
    for pid, to in moving.items():
        writes.persons[to] = persons[pid]
        for rid in members[pid]:
            record = StoredRecord.decode(rid, records[rid])
            record.pid = to
            writes.records[rid] = record.encode()
    return writes


def _audit(
    store: Store,
    action: str,
    *,
    scope: str,
    dataset: str = "",
    counts: dict[str, int] | None = None,
) -> None:
    """One audit entry of a rotation step: the dataset moving, or else the new scope's name
    (``domain@version``), which names the domain and the version it moves to."""
    logger.info("key rotation: %s", action)
    append_audit(
        store,
        identity="broker",
        role="service",
        action=action,
        dataset=dataset or scope,
        counts=counts or {},
    )
