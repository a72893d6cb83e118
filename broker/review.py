"""Review without identities: each organisation's doubts about its own records.

An organisation downloads (``GET /v1/review``, ``tessera-sdk review``) the possible
matches and the recorded conflicts that involve one of its own records, so that it can
check that record, correct it at source (a PDS trace, a typo) and upload it again. Each
item names the organisation's own reference (which only its local index maps back to a
local id), the kind of doubt, the other record's *dataset id* and, per comparison or match
key, whether the two records agreed, at which level, or disagreed — never the other
record's reference, payload, tokens or record number. The operator sees counts only (the
linkage report's conflicts and possible matches). Every download is audited.

Evidence of a conflict is per match key of the domain: the two stored records' tokens
(re-keyed at rest, so equal tokens mean equal values) agree, disagree, or cannot be
compared (one has none). Evidence of a possible match is its agreement vector under the
blocking key that made it a candidate, named by the model's layout.

:func:`domain_review` takes the engine's types (conflicts, scored pairs, the fitted
model), so the probabilistic stage's possible matches join the list by passing them in.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from broker.audit import append_audit
from broker.matching import MISSING, Model, ScoredPair
from broker.store.client import Store
from broker.store.datasets import dataset_id, list_all_datasets
from broker.store.identities import Identity
from broker.store.linkage_store import ConflictEntry, LinkageStore
from broker.store.rotation_store import active_scope
from broker.visibility import read_whole
from keys.wire_review import Doubt, EvidenceOut, Outcome, ReviewItem, ReviewOut

__all__ = ["MAX_CONFLICTS", "REVIEW_ACTION", "build_review", "domain_review"]

REVIEW_ACTION = "review.download"
"""The audit action of a review download."""

MAX_CONFLICTS = 100_000
"""Conflicts read per domain at most (the linkage's whole list, before filtering)."""

_DOUBTS = {"key": Doubt.KEY_CONFLICT, "twin": Doubt.TWIN_CONFLICT, "merge": Doubt.MERGE_CONFLICT}


@dataclass(frozen=True, slots=True)
class _Held:
    dataset: str
    ref: bytes
    tokens: tuple[bytes | None, ...]


def _read_records(
    linkage: LinkageStore,
    datasets: Iterable[str],
    *,
    refs: set[tuple[str, bytes]],
    rids: set[int],
    keep_all: frozenset[str],
) -> tuple[dict[tuple[str, bytes], _Held], dict[int, _Held]]:
    """The stored records wanted, by ``(dataset, ref)`` and by record number.

    Keeps a record when it is named in ``refs`` or ``rids`` or its dataset is in
    ``keep_all`` (the caller's own, when pairs name own records by number).
    """
    by_ref: dict[tuple[str, bytes], _Held] = {}
    by_rid: dict[int, _Held] = {}
    for ident in sorted(set(datasets)):
        for records in linkage.iter_dataset_records(ident):
            for r in records:
                key = (ident, bytes(r.ref))
                if key in refs or r.rid in rids or ident in keep_all:
                    held = _Held(ident, key[1], tuple(r.tokens))
                    by_ref[key] = held
                    by_rid[r.rid] = held
    return by_ref, by_rid


def _key_evidence(mine: _Held, other: _Held | None, key_names: Sequence[str]) -> list[EvidenceOut]:
    out: list[EvidenceOut] = []
    for k, name in enumerate(key_names):
        a = mine.tokens[k] if k < len(mine.tokens) else None
        b = other.tokens[k] if other is not None and k < len(other.tokens) else None
        if a is None or b is None:
            out.append(EvidenceOut(evidence=name, level="", outcome=Outcome.NOT_COMPARED))
        elif a == b:
            out.append(EvidenceOut(evidence=name, level="token", outcome=Outcome.AGREES))
        else:
            out.append(EvidenceOut(evidence=name, level="disagree", outcome=Outcome.DISAGREES))
    return out


def _pair_evidence(model: Model, pair: ScoredPair) -> list[EvidenceOut]:
    layout = model.layout.blocks[pair.block]
    out: list[EvidenceOut] = []
    for name, levels, level in zip(layout.comparisons, layout.levels, pair.agreement, strict=True):
        if level == MISSING:
            out.append(EvidenceOut(evidence=name, level="", outcome=Outcome.NOT_COMPARED))
        elif level >= len(levels):
            out.append(EvidenceOut(evidence=name, level="disagree", outcome=Outcome.DISAGREES))
        else:
            out.append(EvidenceOut(evidence=name, level=levels[level], outcome=Outcome.AGREES))
    return out


def _conflict_items(
    domain: str,
    own: dict[str, str],
    conflicts: Sequence[ConflictEntry],
    records: dict[tuple[str, bytes], _Held],
    key_names: Sequence[str],
) -> list[ReviewItem]:
    items: list[ReviewItem] = []
    for c in conflicts:
        for mine, other in ((c.record, c.other), (c.other, c.record)):
            held = records.get((mine.dataset, bytes(mine.ref)))
            if mine.dataset not in own or held is None:
                continue
            evidence = _key_evidence(
                held, records.get((other.dataset, bytes(other.ref))), key_names
            )
            items.append(
                ReviewItem(
                    domain=domain,
                    dataset=own[mine.dataset],
                    ref=bytes(mine.ref).hex(),
                    doubt=_DOUBTS[c.kind],
                    other_dataset=other.dataset,
                    evidence=evidence,
                )
            )
    return items


def domain_review(
    linkage: LinkageStore,
    own: dict[str, str],
    *,
    conflicts: Sequence[ConflictEntry],
    possible: Sequence[ScoredPair] = (),
    model: Model | None = None,
) -> list[ReviewItem]:
    """The review items of one domain that involve one of the caller's own records.

    Args:
        linkage: the domain's linkage.
        own: the caller's datasets in the domain, id (``org/name``) → name.
        conflicts: the linkage's recorded conflicts (``LinkageStore.conflicts``).
        possible: possible matches (grey-zone pairs of the probabilistic stage).
        model: the fitted model that scored them (names their evidence); pairs are left
            out without one.

    Returns:
        One item per own record per doubt, in no order that groups persons.
    """
    entries = linkage.datasets().values()
    key_names = next(iter(entries)).key_names if entries else ()
    pairs = list(possible) if model is not None else []
    mine = [c for c in conflicts if c.record.dataset in own or c.other.dataset in own]
    wanted = {(r.dataset, bytes(r.ref)) for c in mine for r in (c.record, c.other)}
    involved = {d for d, _ in wanted}
    if not mine and not pairs:
        return []
    by_ref, by_rid = _read_records(
        linkage,
        [e.id for e in entries] if pairs else involved,
        refs=wanted,
        rids={rid for p in pairs for rid in (p.left, p.right)},
        keep_all=frozenset(own) if pairs else frozenset(),
    )
    domain = linkage.scope
    items = _conflict_items(domain, own, mine, by_ref, key_names)
    if model is not None:
        for pair in pairs:
            for mine_rid, other_rid in ((pair.left, pair.right), (pair.right, pair.left)):
                held, other = by_rid.get(mine_rid), by_rid.get(other_rid)
                if held is None or other is None or held.dataset not in own:
                    continue
                items.append(
                    ReviewItem(
                        domain=domain,
                        dataset=own[held.dataset],
                        ref=held.ref.hex(),
                        doubt=Doubt.POSSIBLE_MATCH,
                        other_dataset=other.dataset,
                        probability=pair.probability,
                        blocking_key=model.layout.blocks[pair.block].name,
                        evidence=_pair_evidence(model, pair),
                    )
                )
    return items


def build_review(store: Store, identity: Identity, *, now: datetime | None = None) -> ReviewOut:
    """The caller's review list over every domain it holds a dataset in; audited.

    Each domain is read as of whole batches (:func:`broker.visibility.read_whole`).

    Raises:
        LinkageBusyError: a batch of one of the domains stayed half linked too long.
    """
    mine = [d for d in list_all_datasets(store) if d.org == identity.name]
    items: list[ReviewItem] = []
    for domain in sorted({d.domain for d in mine}):
        own = {dataset_id(d.org, d.name): d.name for d in mine if d.domain == domain}

        def read(domain: str = domain, own: dict[str, str] = own) -> list[ReviewItem]:
            # the active linkage, read inside read_whole: a key rotation's switch retries it
            linkage = LinkageStore(store.redis, scope=active_scope(store, domain))
            return domain_review(linkage, own, conflicts=linkage.conflicts(limit=MAX_CONFLICTS))

        items += read_whole(store, domain, read)
    items.sort(key=lambda i: (i.domain, i.dataset, i.ref, i.doubt.value, i.other_dataset))
    counts: dict[str, int] = {"items": len(items)}
    for item in items:
        counts[item.doubt.value] = counts.get(item.doubt.value, 0) + 1
    append_audit(
        store,
        identity=identity.name,
        role=identity.role.value,
        organisation=identity.name,
        action=REVIEW_ACTION,
        counts=counts,
        now=now,
    )
    return ReviewOut(items=items, counts=counts)
