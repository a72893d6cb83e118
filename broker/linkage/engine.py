"""The engine: :class:`Linker`, a façade over the rules, the session and the clean path.

Each call of :meth:`Linker.link`, :meth:`Linker.retract` or :meth:`Linker.replace_finish`
holds the scope's linkage lock, takes its records a slice at a time, decides each slice
onto the store's mirror — clean records by :class:`~broker.linkage.clean_path.CleanPath`,
runs of the others by a :class:`~broker.linkage.session.Session`, both by the one set of
rules in :mod:`broker.linkage.rules` — and commits every slice in one atomic write, in a
writer thread while the next slice is decided, so a crash leaves a slice applied whole
or not at all. docs/linkage.md describes the algorithm; docs/keyspace.md the storage.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from broker.linkage.clean_path import CleanPath
from broker.linkage.counters import LinkageReport, build_report
from broker.linkage.model import DatasetInfo, IncomingRecord, LinkStats
from broker.linkage.probabilistic import ProbabilisticStage
from broker.linkage.rules import NO_KEY
from broker.linkage.session import MAX_ROUNDS, Session
from broker.matching import Layout, Model, layout_to_json
from broker.store.linkage_codec import (
    StoredRecord,
    index_keys,
    index_tokens,
    ref_prefix,
)
from broker.store.linkage_counts import SAMPLE_FROM, sample_shift
from broker.store.linkage_store import (
    DatasetEntry,
    LinkageStore,
    LinkedRecord,
    PersonId,
    WriteSet,
)
from keys.derive import RecordRef
from keys.errors import BrokerError

__all__ = ["SLICE", "Linker"]

logger = logging.getLogger(__name__)

SLICE = 4_096
"""Records per atomic commit, by default."""

_Item = tuple[bytes, IncomingRecord, tuple[bytes | None, ...]]


def _pause_cyclic_gc() -> bool:
    """Pause the cyclic garbage collector for one call; whether it was running.

    Linking allocates millions of short-lived objects that reference counting frees,
    while the mirror holds millions that live on; with the collector running, each of
    its full passes walks the whole mirror (measured: about 7% of the linking CPU at
    200,000 records a side). A call makes next to no reference cycles, so the collector
    is paused while it runs and catches up after (``gc.enable``); a call that finds it
    paused already (another thread's call) leaves it as it is.
    """
    if not gc.isenabled():
        return False
    gc.disable()
    return True


class Linker:
    """The incremental linkage engine over one :class:`LinkageStore`.

    Args:
        store: where records and persons live (its mirror holds the token index).
        now: clock (seconds), for waiting on the linkage lock.
        slice_size: records per atomic commit. Slices are decided onto the store's
            mirror; while one is decided, a worker thread writes the one before it to
            Redis, and a write runs only after the one before it succeeded.
        clean_path: link clean records by the clean path (the default). ``False``
            decides each record the clean path would have taken by a session of its
            own instead, at the same point of the slice: the same persons, conflicts
            and report by construction of the rules, which the differential test
            checks (slower; for tests and for ruling the clean path out).
        sample_from: evidence records past which the probabilistic stage's pattern
            counts are kept on a sample of blocks (``broker.store.linkage_counts``); the
            shift reached is stored with the counts, so every worker of a scope counts
            the same sample. Smaller in tests, to reach the sample on small data.
    """

    def __init__(
        self,
        store: LinkageStore,
        *,
        now: Callable[[], float] = time.time,
        slice_size: int = SLICE,
        clean_path: bool = True,
        sample_from: int = SAMPLE_FROM,
    ) -> None:
        self._store = store
        self._sample_from = sample_from
        self._now = now
        self._slice = slice_size
        self._clean_path = clean_path
        self._redecided: list[int] = []
        self._with_evidence = False

    # Datasets ------------------------------------------------------------------------------

    def _datasets(self, dataset: DatasetInfo) -> tuple[DatasetEntry, dict[int, DatasetEntry]]:
        known = self._store.datasets()
        entry = next((d for d in known.values() if d.id == dataset.id), None)
        if (
            entry is None
            or entry.one_record_per_person != dataset.one_record_per_person
            or entry.key_names != dataset.key_names
            or entry.org != dataset.org
        ):
            entry = self._store.register_dataset(
                dataset.id,
                org=dataset.org,
                one_record_per_person=dataset.one_record_per_person,
                key_names=dataset.key_names,
            )
            known[entry.dsn] = entry
        return entry, known

    def _batch(self, batch_id: str) -> tuple[int, WriteSet]:
        """The batch's number, and the (staged) writes that register it when it is new."""
        writes = WriteSet()
        bseq = self._store.batch_number(batch_id)
        if bseq is None:
            bseq = self._store.mirror.next_bseq + 1
            writes.batches[batch_id] = bseq
            writes.meta["bseq"] = bseq
            self._store.stage(writes)
        return bseq, writes

    # Linking -------------------------------------------------------------------------------

    def link(
        self,
        dataset: DatasetInfo,
        records: Sequence[IncomingRecord],
        *,
        batch_id: str,
        layout: Layout | None = None,
    ) -> LinkStats:
        """Upsert ``records`` of ``dataset`` and link them against everything held.

        New references are added and linked; references already held with other tokens
        are re-linked; references held with the same tokens only refresh their payload
        and batch mark. Applying the same records again changes nothing else. Records are
        committed ``slice_size`` at a time (each commit atomic), so one script never holds
        Redis for long.

        Args:
            dataset: the dataset the records belong to.
            records: one chunk (thousands of records is the sweet spot).
            batch_id: the upload batch; :meth:`replace_finish` uses it.
            layout: which column of the records' evidence is which (the chunk's
                evidence header); without it their evidence is not kept. The first
                layout a scope sees is its layout; evidence of another layout (another
                spec, whose tokens could never agree) is not kept either.

        Returns:
            What the call did.
        """
        stats = LinkStats(received=len(records))
        store = self._store
        store.tune_server()
        token = store.acquire(now=self._now)
        committed: Future[None] | None = None
        paused = _pause_cyclic_gc()
        try:
            entry, known = self._datasets(dataset)
            bseq, writes = self._batch(batch_id)
            self._with_evidence = self._take_layout(layout, writes)
            with ThreadPoolExecutor(max_workers=1) as pool:
                for start in range(0, len(records), self._slice):
                    piece = records[start : start + self._slice]
                    self._link_slice(entry, known, piece, bseq, stats, writes)
                    if committed is not None and committed.done():
                        committed.result()
                    expected = store.next_generation()
                    committed = pool.submit(self._write, writes, expected, committed)
                    writes = WriteSet()
                if committed is not None:
                    committed.result()
        except BrokerError:
            # A write that failed in the worker thread is the cause: report it.
            if committed is not None and committed.done() and committed.exception():
                committed.result()
            raise
        finally:
            if paused:
                gc.enable()
            store.release(token)
        return stats

    def _take_layout(self, layout: Layout | None, writes: WriteSet) -> bool:
        """Whether the records' evidence is kept: the scope's layout is ``layout``."""
        if layout is None:
            return False
        mirror = self._store.mirror
        if mirror.layout is None:
            staged = WriteSet(layout=(layout, layout_to_json(layout)))
            self._store.stage(staged)
            writes.update(staged)
            return True
        if mirror.layout != layout:
            logger.warning(
                "a batch's evidence has another layout than its linkage domain's: not kept"
            )
            return False
        return True

    def _write(self, writes: WriteSet, expected: int, before: Future[None] | None) -> None:
        """Write one slice to Redis after the previous slice (never after its failure)."""
        if before is not None:
            before.result()
        self._store.write(writes, expected)

    def _link_slice(
        self,
        entry: DatasetEntry,
        known: dict[int, DatasetEntry],
        records: Sequence[IncomingRecord],
        bseq: int,
        stats: LinkStats,
        writes: WriteSet,
    ) -> None:
        """Decide one slice in order onto the mirror, collecting its writes in ``writes``.

        Clean records (see :class:`~broker.linkage.clean_path.CleanPath`) are linked at
        once; a run of the others goes through one session, which must have decided
        before the next clean record is checked, since what it decides may make that
        record unclean. Without the clean path, a clean record is decided by a session
        of its own at the same point.
        """
        latest: dict[bytes, IncomingRecord] = {}
        for incoming in records:
            latest[incoming.ref] = incoming
        self._redecided = []
        width = len(entry.key_names)
        store = self._store
        clean = CleanPath(store.mirror, entry, known, bseq, writes, stats)
        waiting: list[_Item] = []
        for ref, incoming in latest.items():
            tokens = index_tokens(incoming.tokens, width)
            if waiting:
                if clean.decide(ref, tokens) is None:
                    waiting.append((ref, incoming, tokens))
                    continue
                self._link_by_session(entry, known, waiting, bseq, stats, writes)
                waiting = []
            if self._clean_path:
                if not clean.link(ref, incoming, tokens):
                    waiting.append((ref, incoming, tokens))
            elif clean.decide(ref, tokens) is None:
                waiting.append((ref, incoming, tokens))
            else:
                self._link_by_session(entry, known, [(ref, incoming, tokens)], bseq, stats, writes)
        if waiting:
            self._link_by_session(entry, known, waiting, bseq, stats, writes)
        self._probabilistic(entry, known, latest, stats, writes)
        mirror = store.mirror
        writes.meta.update(rid=mirror.next_rid, pid=mirror.next_pid, bseq=mirror.next_bseq)

    def _probabilistic(
        self,
        entry: DatasetEntry,
        known: dict[int, DatasetEntry],
        latest: dict[bytes, IncomingRecord],
        stats: LinkStats,
        writes: WriteSet,
    ) -> None:
        """Keep the slice's new evidence, then run the probabilistic stage on the slice.

        Its candidates are the records whose evidence is new or changed and those a
        session re-decided; both paths hand it the same mirror, so it decides alike.
        """
        mirror = self._store.mirror
        candidates = list(self._redecided)
        if self._with_evidence:
            prefix = ref_prefix(entry.dsn)
            for ref, incoming in latest.items():
                evidence = incoming.evidence
                rid = mirror.rids.get(prefix + ref, 0)
                if evidence is None or not rid or mirror.evidence.get(rid) == evidence:
                    continue
                writes.evidence[rid] = evidence
                mirror.set_evidence(rid, evidence)
                candidates.append(rid)
            shift = sample_shift(len(mirror.evidence), self._sample_from)
            if candidates and shift > mirror.shift:  # the stage below takes the counts
                mirror.resample(shift)
                writes.meta["shift"] = shift
        if mirror.layout is not None and candidates:
            opp = {d.dsn: d.one_record_per_person for d in known.values()}
            ProbabilisticStage(self._store, opp, stats).run(candidates, writes)

    def _link_by_session(
        self,
        entry: DatasetEntry,
        known: dict[int, DatasetEntry],
        items: Sequence[_Item],
        bseq: int,
        stats: LinkStats,
        writes: WriteSet,
    ) -> None:
        """Link records by the full rules: index all, dissolve what changes touch, decide."""
        dsn = entry.dsn
        prefix = ref_prefix(dsn)
        session = Session(self._store, known, stats)
        session.load(
            tokens=[key for _, _, tokens in items for key in index_keys(tokens)],
            refs=[prefix + ref for ref, _, _ in items],
        )
        changes = session.writes
        old_tokens: list[bytes] = []
        for ref, _, tokens in items:
            held = session.records.get(session.rids.get(prefix + ref, 0))
            if held is not None and held.tokens != tokens:
                old_tokens += index_keys(held.tokens)
        if old_tokens:
            session.load(tokens=old_tokens)
        for ref, incoming, tokens in items:
            rid = session.rids.get(prefix + ref, 0)
            record = session.records.get(rid) if rid else None
            was_held = record is not None
            if record is not None:
                if record.tokens == tokens:
                    stats.unchanged += 1
                    if record.bseq != bseq:
                        session.touch_record(rid)
                        record.bseq = bseq
                else:
                    stats.changed += 1
                    session.touch_record(rid)
                    session.remove_tokens(record)
                    session.detach(record)
                    record.tokens = tokens
                    record.bseq = bseq
                    session.add_tokens(record)
                    session.queue.add(rid)
            else:
                stats.added += 1
                rid = session.new_rid()
                record = StoredRecord(rid, dsn, 0, bseq, NO_KEY, 0, ref, tokens)
                session.touch_record(rid)
                session.records[rid] = record
                session.rids[prefix + ref] = rid
                changes.refs[prefix + ref] = rid
                session.add_tokens(record)
                session.queue.add(rid)
            if incoming.stores_payload:
                changes.payloads[rid] = incoming.stored_payload()
            elif was_held:
                changes.payloads[rid] = None
        self._settle(session)
        decided = session.finish()
        self._store.stage(decided)
        writes.update(decided)
        self._redecided += session.decided

    def _settle(self, session: Session) -> None:
        """Dissolve what changes touched, read the neighbourhood, decide, in that order."""
        for _ in range(MAX_ROUNDS):
            if not session.dissolve:
                break
            session.load(pids=list(session.dissolve))
            session.load_neighbourhood()
            session.expand_dissolves()
        if session.queue and not session.complete:
            session.load_neighbourhood()
        session.decide_all()

    # Retracting ----------------------------------------------------------------------------

    def retract(
        self, dataset: DatasetInfo, refs: Sequence[RecordRef], *, batch_id: str
    ) -> LinkStats:
        """Remove records by reference and re-link the persons they were part of.

        Unknown references are ignored, so a retraction may be re-applied.

        Args:
            dataset: the dataset the references belong to.
            refs: references to remove.
            batch_id: the retraction batch (for the record; retraction needs no mark).

        Returns:
            What the call did.
        """
        stats = LinkStats(received=len(refs))
        self._store.tune_server()
        token = self._store.acquire(now=self._now)
        try:
            entry, known = self._datasets(dataset)
            prefix = ref_prefix(entry.dsn)
            for start in range(0, len(refs), self._slice):
                keys = [prefix + ref for ref in refs[start : start + self._slice]]
                session = Session(self._store, known, stats)
                session.load(refs=keys)
                rids = [session.rids[k] for k in dict.fromkeys(keys) if session.rids.get(k)]
                self._retract_rids(session, rids)
        finally:
            self._store.release(token)
        return stats

    def _retract_rids(self, session: Session, rids: Sequence[int]) -> None:
        session.load(rids=rids)
        for rid in rids:
            record = session.records.get(rid)
            if record is None:
                continue
            session.stats.retracted += 1
            session.load(pids=[record.pid] if record.pid else [])
            session.touch_record(rid)
            session.load(tokens=index_keys(record.tokens))
            session.remove_tokens(record)
            session.detach(record)
            session.delete(record)
        self._settle(session)
        writes = session.finish()
        store = self._store
        store.stage(writes)
        if store.mirror.layout is not None and session.decided:
            ProbabilisticStage(store, session.opp, session.stats).run(session.decided, writes)
        store.write(writes, store.next_generation())

    def replace_finish(self, dataset: DatasetInfo, *, batch_id: str) -> LinkStats:
        """After a ``replace`` batch was linked: retract the dataset's records it lacked.

        Args:
            dataset: the dataset replaced.
            batch_id: the replace batch, every chunk of which went through :meth:`link`.

        Returns:
            What the call did (``retracted`` counts the records removed).
        """
        stats = LinkStats()
        self._store.tune_server()
        token = self._store.acquire(now=self._now)
        try:
            _, known = self._datasets(dataset)
            bseq = self._store.batch_number(batch_id)
            stale: list[int] = []
            for chunk in self._store.iter_dataset_records(dataset.id):
                stale.extend(r.rid for r in chunk if r.bseq != bseq)
            stats.received = len(stale)
            for start in range(0, len(stale), self._slice):
                session = Session(self._store, known, stats)
                self._retract_rids(session, stale[start : start + self._slice])
        finally:
            self._store.release(token)
        return stats

    def refit(self) -> Model | None:
        """Refit the probabilistic stage's model now, from all the evidence held (on demand).

        Links are not changed: released links the new model scores below its threshold
        are listed for review (``refit`` possible matches), as after any refit.

        Returns:
            The model now stored, or ``None`` when the holding has too few known matches
            (or no evidence) to fit one.
        """
        store = self._store
        store.tune_server()
        token = store.acquire(now=self._now)
        try:
            opp = {d.dsn: d.one_record_per_person for d in store.datasets().values()}
            stage = ProbabilisticStage(store, opp, LinkStats())
            model = stage.refit()
            if model is not None:
                writes = WriteSet()
                stage.run((), writes)
                store.write(writes, store.next_generation())
        finally:
            store.release(token)
        return model

    # Reading -------------------------------------------------------------------------------

    def report(self) -> LinkageReport:
        """The linkage report, from counters every write keeps up to date."""
        return build_report(self._store.counters(), self._store.datasets())

    def person_of(self, dataset_id: str, ref: RecordRef) -> PersonId | None:
        """Person of a record, or ``None`` when the record is not held."""
        return self._store.person_of(dataset_id, ref)

    def records_of_person(self, person: PersonId) -> list[LinkedRecord]:
        """Records of a person: dataset id, reference and payload of each."""
        return self._store.records_of_person(person)
