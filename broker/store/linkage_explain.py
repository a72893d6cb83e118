"""How each record was linked, and the pairs kept for review: what reports and releases read.

:meth:`LinkageStore.link_basis <broker.store.linkage_store.LinkageStore.link_basis>` and
:meth:`LinkageStore.possible_matches
<broker.store.linkage_store.LinkageStore.possible_matches>` return these; the linkage
report, the review file, the dashboard's charts and the link-quality column of cohorts
and direct-care returns are built from them and from ``LinkageStore.fitted_model()``.
Nothing here holds a token or an identifier: references are the organisation's opaque
ones, and evidence is named by comparison and level only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, cast

from broker.matching import MISSING, Model, ScoredPair
from broker.store import keyspace
from broker.store.linkage_codec import StoredRecord, decode_members, stored_dsn
from broker.store.linkage_evidence import (
    POSSIBLE_REASONS,
    PossibleEntry,
    decode_basis,
    decode_possible,
)

if TYPE_CHECKING:
    from broker.store.linkage_store import LinkageStore

__all__ = [
    "BasisKind",
    "LinkBasis",
    "PossibleMatch",
    "explain_bases",
    "link_probabilities",
    "name_levels",
    "read_possible_matches",
    "read_scored_pairs",
]

_NO_KEY = 255
"""The ``link_key`` of a record that started its person (the rules' ``NO_KEY``)."""

BasisKind = Literal["match_key", "probabilistic", "unlinked"]
"""How a record came to be in its person (see :class:`LinkBasis`)."""


@dataclass(frozen=True, slots=True)
class LinkBasis:
    """Why a record is in its person.

    Attributes:
        kind: ``match_key`` when the exact cascade joined it (``match_key`` names the
            key); ``probabilistic`` when the probabilistic stage did (the pair's
            probability, match weight, blocking key and agreement are given);
            ``unlinked`` when its person holds no other record. A record that *started*
            a person others joined has the basis of the first record that joined it
            (a person of two records linked by one pair shows that pair on both).
        match_key: the match key's name (``match_key`` kind).
        probability: the pair's posterior match probability (``probabilistic``).
        match_weight: the pair's log2 posterior odds (``probabilistic``).
        blocking_key: the blocking key that made the pair a candidate (``probabilistic``).
        agreement: per comparison of that blocking key, ``(comparison, level)``: the
            strongest level that agreed, ``"disagree"`` or ``"missing"``
            (``probabilistic``); the model's m/u per level give the waterfall.
        partner: the record number of the other record of the pair (``probabilistic``).
    """

    kind: BasisKind
    match_key: str | None = None
    probability: float | None = None
    match_weight: float | None = None
    blocking_key: str | None = None
    agreement: tuple[tuple[str, str], ...] = ()
    partner: int | None = None


@dataclass(frozen=True, slots=True)
class PossibleMatch:
    """A candidate pair the probabilistic stage kept for review and did not link.

    Attributes:
        record: record number of the record being decided when the pair was found.
        other: record number of the other record of the pair.
        record_dataset: dataset id of ``record``.
        other_dataset: dataset id of ``other``.
        reason: ``grey`` (probability between the review and the link threshold),
            ``rival`` (above the link threshold, but linking would chain two persons
            already linked, or other candidates of one dataset are as likely),
            ``twin`` (above it, refused by the twin guard) or ``refit`` (a released
            link a refitted model scores below its threshold: still linked).
        probability: posterior match probability of the pair.
        match_weight: log2 posterior odds.
        blocking_key: the blocking key that scored the pair.
        agreement: per comparison, ``(comparison, level)`` as in :class:`LinkBasis`.
    """

    record: int
    other: int
    record_dataset: str
    other_dataset: str
    reason: str
    probability: float
    match_weight: float
    blocking_key: str
    agreement: tuple[tuple[str, str], ...]


def name_levels(
    model: Model | None, block: int, vector: Sequence[int]
) -> tuple[str, tuple[tuple[str, str], ...]]:
    """The blocking key's name and the agreement vector as ``(comparison, level)`` names."""
    if model is None or block >= len(model.layout.blocks):
        return f"block{block}", tuple((f"c{i}", str(v)) for i, v in enumerate(vector))
    layout = model.layout.blocks[block]
    named: list[tuple[str, str]] = []
    for name, levels, level in zip(layout.comparisons, layout.levels, vector, strict=False):
        if level == MISSING:
            named.append((name, "missing"))
        elif level >= len(levels):
            named.append((name, "disagree"))
        else:
            named.append((name, levels[level]))
    return layout.name, tuple(named)


def explain_bases(store: LinkageStore, rids: Iterable[int]) -> dict[int, LinkBasis]:
    """Each record's basis: :meth:`LinkageStore.link_basis`."""
    wanted = list(dict.fromkeys(rids))
    own = _own_bases(store, wanted)
    anchors: dict[int, int] = {}
    for rid, (basis, members) in own.items():
        if basis is None and len(members) > 1:
            anchors[rid] = members[1] if members[0] == rid else members[0]
    joined = _own_bases(store, sorted(set(anchors.values()) - own.keys()))
    joined.update(own)
    out: dict[int, LinkBasis] = {}
    for rid, (basis, _) in own.items():
        if basis is not None:
            out[rid] = basis
        elif rid in anchors and joined.get(anchors[rid], (None, []))[0] is not None:
            first = cast(LinkBasis, joined[anchors[rid]][0])
            # the pair that joined the first record to this one: seen from this side
            partner = anchors[rid] if first.partner == rid else first.partner
            out[rid] = dataclasses.replace(first, partner=partner)
        else:
            out[rid] = LinkBasis("unlinked")
    return out


def _own_bases(
    store: LinkageStore, rids: list[int]
) -> dict[int, tuple[LinkBasis | None, list[int]]]:
    """Per held record: its own basis (``None`` when it started its person), members."""
    if not rids:
        return {}
    records = store.bucket_values(keyspace.LINK_RECORDS, rids)
    bases = store.bucket_values(keyspace.LINK_BASIS, rids)
    decoded = {
        rid: StoredRecord.decode(rid, raw)
        for rid, raw in zip(rids, records, strict=True)
        if raw is not None
    }
    pids = sorted({r.pid for r in decoded.values() if r.pid})
    members = {
        pid: [m for m, _ in decode_members(raw)] if raw else []
        for pid, raw in zip(pids, store.bucket_values(keyspace.LINK_PERSONS, pids), strict=True)
    }
    keys = {d.dsn: d.key_names for d in store.datasets().values()}
    model = store.fitted_model()
    out: dict[int, tuple[LinkBasis | None, list[int]]] = {}
    for rid, raw_basis in zip(rids, bases, strict=True):
        record = decoded.get(rid)
        if record is None:
            continue
        mine = members.get(record.pid, [])
        basis: LinkBasis | None = None
        if raw_basis is not None:
            partner, block, probability, weight, vector = decode_basis(raw_basis)
            if partner in mine:
                name, agreement = name_levels(model, block, vector)
                basis = LinkBasis(
                    "probabilistic",
                    probability=probability,
                    match_weight=weight,
                    blocking_key=name,
                    agreement=agreement,
                    partner=partner,
                )
        if basis is None and record.link_key != _NO_KEY and len(mine) > 1:
            names = keys.get(record.dsn, ())
            key = record.link_key
            basis = LinkBasis(
                "match_key", match_key=names[key] if key < len(names) else f"key{key}"
            )
        if basis is None and len(mine) <= 1:
            basis = LinkBasis("unlinked")
        out[rid] = (basis, mine)
    return out


def read_possible_matches(store: LinkageStore, *, limit: int = 10_000) -> list[PossibleMatch]:
    """The possible matches: :meth:`LinkageStore.possible_matches`."""
    model = store.fitted_model()
    names = {d.dsn: d.id for d in store.datasets().values()}
    entries: list[tuple[int, list[PossibleEntry]]] = []
    wanted: set[int] = set()
    count = 0
    for rid, raw in store.scan_buckets(keyspace.LINK_POSSIBLE, "rid"):
        items = decode_possible(raw)
        entries.append((rid, items))
        wanted.add(rid)
        wanted.update(item[0] for item in items)
        count += len(items)
        if count >= limit:
            break
    order = sorted(wanted)
    dsn_of = {
        rid: stored_dsn(raw)
        for rid, raw in zip(order, store.bucket_values(keyspace.LINK_RECORDS, order), strict=True)
        if raw is not None
    }
    out: list[PossibleMatch] = []
    for rid, items in entries:
        for other, block, reason, probability, weight, vector in items:
            if rid not in dsn_of or other not in dsn_of:
                continue
            name, agreement = name_levels(model, block, vector)
            out.append(
                PossibleMatch(
                    rid,
                    other,
                    names.get(dsn_of[rid], ""),
                    names.get(dsn_of[other], ""),
                    POSSIBLE_REASONS[reason],
                    probability,
                    weight,
                    name,
                    agreement,
                )
            )
    return out[:limit]


def read_scored_pairs(
    store: LinkageStore, *, linked: bool = True, possible: bool = True, limit: int = 100_000
) -> list[ScoredPair]:
    """The pairs the probabilistic stage scored and kept, as the model scored them.

    ``linked``: the pairs it linked (each record's stored basis); ``possible``: the
    possible matches. A pair seen twice is kept once. At most ``limit`` pairs: the
    linkage report's histogram and waterfall, and the review file, read these.
    """
    seen: dict[tuple[int, int], ScoredPair] = {}

    def keep(rid: int, other: int, block: int, weight: float, p: float, v: tuple[int, ...]) -> None:
        left, right = min(rid, other), max(rid, other)
        seen.setdefault((left, right), ScoredPair(left, right, block, v, weight, p))

    if linked:
        for rid, raw in store.scan_buckets(keyspace.LINK_BASIS, "rid"):
            if len(seen) >= limit:
                break
            partner, block, probability, weight, vector = decode_basis(raw)
            keep(rid, partner, block, weight, probability, vector)
    if possible:
        for rid, raw in store.scan_buckets(keyspace.LINK_POSSIBLE, "rid"):
            if len(seen) >= limit:
                break
            for other, block, _, probability, weight, vector in decode_possible(raw):
                keep(rid, other, block, weight, probability, vector)
    return list(seen.values())


def link_probabilities(store: LinkageStore) -> dict[int, float]:
    """Record number → match probability, for both records of every pair the
    probabilistic stage linked and that is still linked (the releases' link quality)."""
    rids = [rid for rid, _ in store.scan_buckets(keyspace.LINK_BASIS, "rid")]
    out: dict[int, float] = {}
    for rid, basis in explain_bases(store, rids).items():
        if basis.kind == "probabilistic" and basis.probability is not None:
            out[rid] = max(out.get(rid, 0.0), basis.probability)
            if basis.partner is not None:
                out[basis.partner] = max(out.get(basis.partner, 0.0), basis.probability)
    return out
