"""The linkage rules (docs/linkage.md, "The rules"): the one place a record's person is decided.

Both ways a record is linked ask :func:`decide`: a session (:mod:`.session`), which
first indexes the record's tokens and dissolves what that touches, and the clean path
(:mod:`.clean_path`), which checks a precondition under which indexing changes nothing,
then asks the rules before it indexes. Like sqlglot's optimizer rules, each rule is a
named function here, applied in the order of docs/linkage.md:

1. ambiguity — :func:`ambiguous_for`, :func:`turns_ambiguous`, :func:`stays_ambiguous`;
2. candidates — the usable holders of each token, inside :func:`decide`;
3. twin guard — :func:`twin_guarded`;
4. strongest key wins, with merges — :func:`compatible` (merge compatibility);
5. no chaining — weaker keys only record ``key`` conflicts, inside :func:`decide`;
6. otherwise a new person — a :class:`Decision` with person 0.

What the rules read of the linkage is a :class:`Neighbourhood`: who holds each token,
the person of a record, the datasets of a person. They change nothing: the caller
applies the decision.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Final

from broker.store.linkage_codec import (
    holder_at,
    holder_count,
    iter_holders,
    only_other_holder,
)

__all__ = [
    "CONFLICT_KINDS",
    "KEY_CONFLICT",
    "MERGE_CONFLICT",
    "NO_KEY",
    "TWIN_CONFLICT",
    "Conflict",
    "Decision",
    "Neighbourhood",
    "ambiguous_for",
    "candidate_odds",
    "compatible",
    "conflict_flags",
    "decide",
    "outscores_rivals",
    "stays_ambiguous",
    "turns_ambiguous",
    "twin_guarded",
]

NO_KEY: Final = 255
"""``link_key`` of a record that started its person rather than joining one."""
CONFLICT_KINDS: tuple[str, ...] = ("key", "twin", "merge")
"""Conflict kinds by code: a weaker key reached another person; the twin guard refused a
candidate; the strongest key reached persons that could not be merged."""
KEY_CONFLICT: Final = CONFLICT_KINDS.index("key")
TWIN_CONFLICT: Final = CONFLICT_KINDS.index("twin")
MERGE_CONFLICT: Final = CONFLICT_KINDS.index("merge")

Conflict = tuple[int, int, int, int]
"""``(kind, strong key, weak key, a record of the other person)``."""


class Neighbourhood:
    """What the rules read of the linkage; the session and the clean path each give one.

    Attributes:
        opp: dataset number -> whether it is declared one record per person.
    """

    def __init__(self, opp: dict[int, bool]) -> None:
        self.opp = opp

    def person_of(self, rid: int) -> int:
        """The person of record ``rid``: 0 when it is unknown or waits to be re-linked."""
        raise NotImplementedError

    def person_dsns(self, pid: int) -> Iterable[int]:
        """The dataset number of each record of person ``pid``."""
        raise NotImplementedError

    def person_holds(self, pid: int, dsn: int) -> bool:
        """Whether person ``pid`` holds a record of dataset ``dsn``."""
        raise NotImplementedError


class Decision:
    """What the rules decided for one record (nothing is applied yet).

    Attributes:
        pid: the person the record joins; 0 when it starts a new one.
        link_key: the key it joins through, or :data:`NO_KEY`.
        merges: persons merged into ``pid`` through ``link_key``, in order.
        conflicts: conflicts to record, in the order they were found.
        twin_blocks: candidates the twin guard refused.
    """

    __slots__ = ("conflicts", "link_key", "merges", "pid", "twin_blocks")

    def __init__(
        self, pid: int, link_key: int, merges: list[int], conflicts: list[Conflict], twins: int
    ) -> None:
        self.pid = pid
        self.link_key = link_key
        self.merges = merges
        self.conflicts = conflicts
        self.twin_blocks = twins

    def is_plain(self) -> bool:
        """It joins one person (or starts one) with no merge and no conflict."""
        return not self.merges and not self.conflicts


# Rule 1: ambiguity ---------------------------------------------------------------------------


def ambiguous_for(holders: Iterable[tuple[int, int]], opp: dict[int, bool]) -> set[int]:
    """Datasets (one record per person) holding the token on two or more records."""
    seen: set[int] = set()
    out: set[int] = set()
    for _, d in holders:
        if d in seen:
            if opp.get(d, False):
                out.add(d)
        else:
            seen.add(d)
    return out


def turns_ambiguous(holders: bytes, rid: int, dsn: int) -> int:
    """When record ``rid`` of a one-per-person ``dsn`` joins ``holders``: the one other
    record of ``dsn`` already there, whose token turns ambiguous — else 0."""
    if holder_count(holders) == 1:
        other, other_dsn = holder_at(holders, 0)
        return other if other_dsn == dsn and other != rid else 0
    same = [h for h, d in iter_holders(holders) if d == dsn and h != rid]
    return same[0] if len(same) == 1 else 0


def stays_ambiguous(remaining: Sequence[tuple[int, int]], dsn: int) -> bool:
    """Whether a token ambiguous for ``dsn`` stays so with ``remaining`` holders; False
    when exactly one holder of ``dsn`` is left, so the token stops being ambiguous."""
    return sum(1 for _, d in remaining if d == dsn) != 1


# Rules 3 and 4: the twin guard and merge compatibility --------------------------------------


def twin_guarded(hood: Neighbourhood, pid: int, dsn: int, own_opp: bool) -> bool:
    """The twin guard: for a record of a one-per-person ``dsn``, a person already holding
    a record of ``dsn`` is refused."""
    return own_opp and hood.person_holds(pid, dsn)


def compatible(left: set[int], right: Iterable[int], opp: dict[int, bool]) -> bool:
    """Whether a person with datasets ``right`` may merge into one whose one-per-person
    datasets are ``left``: no one-per-person dataset would then hold two records."""
    return not any(d in left for d in right if opp.get(d, False))


# The probabilistic stage's ambiguity: rivals in a one-per-person dataset -------------------

_MAX_WEIGHT: Final = 1000.0  # log2 odds past which 2**weight would overflow a float


def _odds(weight: float) -> float:
    return math.exp2(min(weight, _MAX_WEIGHT))


def candidate_odds(
    pairs: Iterable[tuple[int, int, float]], dsn_of: dict[int, int], opp: dict[int, bool]
) -> dict[tuple[int, int], float]:
    """Per record and one-per-person dataset, the summed posterior odds of its candidates
    there: ``(rid, dsn) -> sum of 2**weight`` over the pairs ``(left, right, weight)``."""
    totals: dict[tuple[int, int], float] = {}
    for left, right, weight in pairs:
        odds = _odds(weight)
        for rid, other in ((left, right), (right, left)):
            dsn = dsn_of[other]
            if opp.get(dsn, False):
                key = (rid, dsn)
                totals[key] = totals.get(key, 0.0) + odds
    return totals


def outscores_rivals(
    left: int,
    right: int,
    weight: float,
    totals: dict[tuple[int, int], float],
    dsn_of: dict[int, int],
    threshold: float,
) -> bool:
    """Whether a pair clears ``threshold`` once its records' rivals are counted.

    The probabilistic stage's form of the ambiguity rule: in a one-per-person dataset at
    most one of a record's candidates can be its match, so a pair's probability among
    its rivals is ``o / (1 + o + rivals)``, with ``o`` its own posterior odds and
    ``rivals`` the summed odds of the other candidates of either record in the other's
    dataset (:func:`candidate_odds`). The stage asks it at the review threshold (one
    half): a pair links only when it is likelier than all its rivals together. Two
    records of one dataset that a third matches equally well (namesakes of one hostel
    with an assigned date of birth, twins the evidence cannot tell apart) each come out
    below one half, and neither is linked; a rival far weaker barely moves the best.
    """
    odds = _odds(weight)
    rivals = totals.get((left, dsn_of[right]), odds) - odds
    rivals += totals.get((right, dsn_of[left]), odds) - odds
    return odds / (1.0 + odds + max(rivals, 0.0)) >= threshold


def conflict_flags(conflicts: Iterable[Conflict]) -> int:
    """Bit ``c`` set for every conflict kind code ``c`` present."""
    flags = 0
    for kind, _, _, _ in conflicts:
        flags |= 1 << kind
    return flags


# The decision --------------------------------------------------------------------------------


def decide(rid: int, dsn: int, held: list[bytes], hood: Neighbourhood) -> Decision:
    """Join record ``rid`` of ``dsn`` to the person of its strongest usable key, or start one.

    Args:
        rid: the record.
        dsn: its dataset.
        held: per match key, strongest first, the packed holders of the record's token
            (``b""`` when absent). The record itself may be among them (a session has
            indexed it) or not (the clean path, which asks first, has checked that no
            holder is of ``dsn``, where the two coincide).
        hood: the rest of what the rules read.

    Returns:
        The decision; the caller applies it.
    """
    opp = hood.opp
    own_opp = opp.get(dsn, False)
    chosen = 0
    chosen_key = NO_KEY
    merged: list[int] = []
    conflicts: list[Conflict] = []
    twins = 0
    for k, raw in enumerate(held):
        if not raw:
            continue
        other = only_other_holder(raw, rid)
        if other is not None:
            # One other holder (the common case): ambiguous for this record's dataset
            # only if it is of it.
            other_rid, other_dsn = other
            if not other_rid or (other_dsn == dsn and own_opp):
                continue
            pid = hood.person_of(other_rid)
            if not pid:
                continue
            if chosen:  # rule 5, as below
                if pid != chosen and pid not in merged:
                    conflicts.append((KEY_CONFLICT, chosen_key, k, other_rid))
            elif twin_guarded(hood, pid, dsn, own_opp):  # rule 3, as below
                conflicts.append((TWIN_CONFLICT, k, k, other_rid))
                twins += 1
            else:  # rule 4 with one candidate
                chosen, chosen_key = pid, k
            continue
        else:
            candidates = {}
            holders = list(iter_holders(raw))
            ambiguous = ambiguous_for(holders, opp)
            if dsn in ambiguous:
                continue
            for holder_rid, holder_dsn in holders:
                if holder_rid == rid or holder_dsn in ambiguous:
                    continue
                pid = hood.person_of(holder_rid)
                if pid and pid not in candidates:
                    candidates[pid] = holder_rid
        if not candidates:
            continue
        if chosen:
            # Rule 5, no chaining: a weaker key reaching another person is a conflict.
            for pid, holder_rid in candidates.items():
                if pid != chosen and pid not in merged:
                    conflicts.append((KEY_CONFLICT, chosen_key, k, holder_rid))
            continue
        usable: list[int] = []
        for pid in sorted(candidates):
            if twin_guarded(hood, pid, dsn, own_opp):
                conflicts.append((TWIN_CONFLICT, k, k, candidates[pid]))
                twins += 1
            else:
                usable.append(pid)
        if not usable:
            continue
        chosen, chosen_key = usable[0], k
        if len(usable) > 1:
            left = {d for d in hood.person_dsns(chosen) if opp.get(d, False)}
            for pid in usable[1:]:
                dsns = list(hood.person_dsns(pid))
                if compatible(left, dsns, opp):
                    merged.append(pid)
                    left.update(d for d in dsns if opp.get(d, False))
                else:
                    conflicts.append((MERGE_CONFLICT, k, k, candidates[pid]))
    return Decision(chosen, chosen_key, merged, conflicts, twins)
