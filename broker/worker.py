"""The link worker: links committed batches, sharing the linkage domains with other workers.

A worker runs as a thread: inside ``tessera-broker serve`` (one process, by default), or
on its own as ``tessera-broker link-worker`` (no HTTP). Several workers on one Redis share
the work by *scope lease* (broker/store/leases.py): a worker links a batch only while it
holds the lease of the batch's linkage domain (every scope of it: while the domain's key
rotates, the active scope and the one being built, broker/rotation.py), and holds at most
one domain at a time, so two workers link two domains side by side and one domain's
batches keep their commit order. The lease lasts ``link_lease_seconds`` (30 s by default)
and is renewed after every slice; a worker that dies keeps its domain until the lease runs
out, then the next worker to look takes the domain over (its linkage locks with it) and
resumes the batch from its last linked chunk. A worker that only stalled and wakes up
after losing its lease stops at its next slice; a slice it was writing is refused by the
generation fence.

The batch lease of broker/store/batches.py is still taken too, so a worker of an earlier
release (batch leases only) never links the batch this one links.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable

from broker import metrics
from broker.errors import DatasetMismatchError, NotFoundOrForbiddenError
from broker.ingest import audit_commit, fault, link_batch
from broker.linkage import Linker
from broker.linkage_report import remember_domain_report
from broker.rotation import linking_scope, rekey_linked, resume_rotations
from broker.runtime import BrokerRuntime
from broker.store import batches as batch_store
from broker.store.datasets import get_dataset, list_all_datasets
from broker.store.leases import claim_scope, drop_scope_leases, release_scope
from broker.store.linkage_store import LinkageStore, drop_stale_locks
from keys.chunk import BatchFormatError
from keys.wire import BatchMode, BatchState

__all__ = ["LinkWorker", "drop_leases"]

logger = logging.getLogger(__name__)

_QUEUE_WINDOW = 100
"""Queued batches the worker looks at to find the oldest one it may link: a batch whose
commit crashed after queueing stays ``receiving`` at the head until retried or expired."""

_Choice = tuple[str, batch_store.BatchRecord, str]
"""A batch to link: its key, its record and its linkage domain (the scope)."""


class LinkWorker:
    """Links committed batches in the background, oldest first, one at a time.

    Args:
        runtime: the broker runtime.
        poll_seconds: how often to look at the queue when not woken by a commit.
        lease_seconds: how long a scope lease lasts without renewal (default: the
            settings' ``link_lease_seconds``).
        max_failures: unexpected errors on one batch (with Redis up) before it is marked
            ``failed`` rather than retried, so one bad batch cannot block the queue.
    """

    def __init__(
        self,
        runtime: BrokerRuntime,
        *,
        poll_seconds: float = 0.5,
        lease_seconds: float | None = None,
        max_failures: int = 5,
    ) -> None:
        self._runtime = runtime
        self._linkers: dict[str, Linker] = {}
        self._domains: dict[str, str] = {}
        self._failures: dict[str, int] = {}
        self._max_failures = max_failures
        self._poll = poll_seconds
        self._lease = lease_seconds or runtime.settings.link_lease_seconds
        self._owner = uuid.uuid4().hex
        self._scope: str | None = None
        self._rotation_owed = False
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._beat = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="tessera-link-worker", daemon=True)

    @property
    def owner(self) -> str:
        """This worker's id in the leases it holds."""
        return self._owner

    @property
    def stall_seconds(self) -> float:
        """How long the loop may go without a beat before it counts as hung.

        A loop that is not linking beats at least every poll interval; one that is
        linking beats after every slice, and a slice longer than the scope lease loses
        the lease anyway, so the bound is the longer of three polls and the lease.
        """
        return max(3 * self._poll, self._lease)

    def seconds_since_beat(self) -> float:
        """Seconds since the loop last made progress (``/healthz``, broker/worker_health.py)."""
        return time.monotonic() - self._beat

    @property
    def running(self) -> bool:
        """Whether the worker thread is alive."""
        return self._thread.is_alive()

    def start(self) -> None:
        """Start the worker thread (it first resumes anything left queued).

        A process that started the embedded redis-server itself knows that no other
        worker was using it, so the leases and linkage locks a crashed predecessor left
        are dropped at once instead of waiting for them to expire. A process attached to
        a server another one started (``serve --workers``, ``link-worker``) drops none.
        """
        store = self._runtime.store
        if store.embedded is not None:
            drop_leases(self._runtime)
        self._audit_owed_commits()
        resume_rotations(self._runtime, fault=self._fault)
        for domain in sorted({d.domain for d in list_all_datasets(store)}):
            remember_domain_report(store, domain)
        self._thread.start()

    def _audit_owed_commits(self) -> None:
        """Write the audit entry of each commit a crash left unaudited.

        Every committed batch is queued until linked (commits queue first), so the queue
        is where to look. A request committing at this very moment on another broker may
        write its entry too: an entry may repeat, never go missing.
        """
        store = self._runtime.store
        for batch_key in batch_store.queued_batches(store, limit=10_000):
            record = batch_store.get_batch(store, batch_key)
            if record is not None and record.commit_audit_owed:
                audit_commit(store, record, identity=record.org, role="org")

    def notify(self) -> None:
        """Wake the worker: a batch was committed."""
        self._wake.set()

    def stop(self, *, timeout: float = 30.0) -> None:
        """Stop after the slice in hand and give the scope back (the rest resumes later)."""
        self._stopping.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        if self._scope is not None and not self._thread.is_alive():
            try:
                release_scope(self._runtime.store, self._scope, owner=self._owner)
            except Exception:  # Redis gone: the lease runs out by itself
                logger.warning("could not give the scope lease back; it expires by itself")
            self._scope = None

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._beat = time.monotonic()
            try:
                worked = self._drain()
            except Exception:
                logger.exception("linkage worker error; retrying")
                worked = False
            if not worked and self._rotation_owed:
                # A rotation step failed after its rekey batch linked: carry on from it.
                try:
                    resume_rotations(self._runtime, fault=self._fault)
                    self._rotation_owed = False
                except Exception:
                    logger.exception("key rotation step failed; retrying")
            if not worked:
                self._wake.wait(self._poll)
                self._wake.clear()

    def _next_batch(self) -> _Choice | None:
        """The oldest committed batch of a scope this worker holds or can take.

        A scope another worker holds is skipped with all its batches (they keep their
        commit order); finished or vanished batches leave the queue. With nothing to do,
        the scope held is given back so that any worker may take it next.
        """
        store = self._runtime.store
        taken: set[str] = set()
        for batch_key in batch_store.queued_batches(store, limit=_QUEUE_WINDOW):
            record = batch_store.get_batch(store, batch_key)
            if record is None or record.state in (BatchState.LINKED, BatchState.FAILED):
                batch_store.release_batch(store, batch_key, done=True)
                continue
            if record.state is BatchState.RECEIVING:
                continue
            scope = self._domain_or_fail(record)
            if scope is None or scope in taken:
                continue
            if claim_scope(store, scope, owner=self._owner, ttl_seconds=self._lease):
                if self._scope is not None and self._scope != scope:
                    release_scope(store, self._scope, owner=self._owner)
                self._scope = scope
                return batch_key, record, scope
            taken.add(scope)
        if self._scope is not None:
            release_scope(store, self._scope, owner=self._owner)
            self._scope = None
        return None

    def _domain_or_fail(self, record: batch_store.BatchRecord) -> str | None:
        """The batch's linkage domain; a batch whose dataset is gone is marked failed.

        A dataset's domain never changes, so it is looked up once per dataset.
        """
        known = self._domains.get(record.dataset)
        if known is not None:
            return known
        org, _, name = record.dataset.partition("/")
        try:
            domain = get_dataset(self._runtime.store, org=org, name=name).domain
            self._domains[record.dataset] = domain
            return domain
        except NotFoundOrForbiddenError as exc:
            logger.error("batch failed to link: %s", type(exc).__name__)
            store = self._runtime.store
            batch_store.mark_batch(store, record.batch_key, BatchState.FAILED, error=str(exc))
            batch_store.release_batch(store, record.batch_key, done=True)
            return None

    def _drain(self) -> bool:
        store = self._runtime.store
        choice = self._next_batch()
        if choice is None:
            return False
        batch_key, record, scope = choice
        if not batch_store.claim_batch(store, batch_key, owner=self._owner, ttl=self._ttl):
            return False
        done = False
        try:
            done = link_batch(
                self._runtime,
                self._linker_for(record, scope),
                record,
                keep_going=self._keep_going(batch_key, scope),
            )
            if done:
                metrics.RECORDS_LINKED.inc(record.record_count)
                self._rotation_owed = record.mode is BatchMode.REKEY
        except (BatchFormatError, DatasetMismatchError, NotFoundOrForbiddenError) as exc:
            logger.error("batch failed to link: %s", type(exc).__name__)
            batch_store.mark_batch(store, batch_key, BatchState.FAILED, error=str(exc))
            done = True
        except Exception:
            if not store.ping():
                raise
            failures = self._failures.get(batch_key, 0) + 1
            self._failures[batch_key] = failures
            if failures < self._max_failures:
                raise
            logger.exception("batch failed to link %d times; marked failed", failures)
            batch_store.mark_batch(
                store, batch_key, BatchState.FAILED, error="linkage error; see the broker log"
            )
            done = True
        finally:
            batch_store.release_batch(store, batch_key, done=done)
        if self._rotation_owed:
            rekey_linked(self._runtime, record, domain=scope, fault=self._fault)
            self._rotation_owed = False
        return True

    def _fault(self, point: str) -> None:
        fault(self._runtime, point)

    @property
    def _ttl(self) -> int:
        """The batch lease's time to live, in whole seconds (at least the scope lease)."""
        return max(1, int(self._lease + 0.999))

    def _linker_for(self, record: batch_store.BatchRecord, domain: str) -> Linker:
        """One linker per linkage scope, kept with its mirror: persons never span two
        domains (nor, while a domain's key rotates, its two key versions)."""
        store = self._runtime.store
        scope = linking_scope(store, record, domain=domain)
        if scope not in self._linkers:
            self._linkers[scope] = Linker(LinkageStore(store.redis, scope=scope))
        return self._linkers[scope]

    def _keep_going(self, batch_key: str, scope: str) -> Callable[[], bool]:
        store = self._runtime.store

        def check() -> bool:
            self._beat = time.monotonic()
            if self._stopping.is_set():
                return False
            if not claim_scope(store, scope, owner=self._owner, ttl_seconds=self._lease):
                logger.warning("lost the scope lease while linking; another worker takes over")
                self._scope = None
                return False
            return batch_store.claim_batch(store, batch_key, owner=self._owner, ttl=self._ttl)

        return check


def drop_leases(runtime: BrokerRuntime) -> None:
    """Drop every lease and linkage lock: for the process that started the embedded Redis.

    Called by a worker that started the embedded redis-server, and by ``serve --workers``
    before it starts the processes that attach to it.
    """
    store = runtime.store
    for batch_key in batch_store.queued_batches(store, limit=1000):
        batch_store.release_batch(store, batch_key, done=False)
    drop_stale_locks(store.redis)
    drop_scope_leases(store)
