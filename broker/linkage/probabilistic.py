"""The probabilistic stage: after the cascade, link what the exact keys missed.

Run at the end of every slice, onto the mirror, after the cascade has decided the slice
(clean path and sessions alike), so both paths hand it the same state and it decides the
same (docs/linkage.md, "The probabilistic stage"):

1. **Candidates** are the slice's records whose evidence is new or changed, or that a
   session re-decided, and whose person holds records of their own dataset only (the
   cascade did not join them to another dataset).
2. **Model.** The scope's model (:func:`broker.matching.incremental.fit_counts` over the
   agreement-pattern counts of every pair that shares a block, which the mirror keeps as
   evidence arrives) is refitted when the evidence held has grown by a tenth since the
   last fit, and stored with the slice; its link thresholds, one per blocking key, are
   :func:`broker.matching.incremental.key_thresholds` over the candidate pairs' counts
   (each key's own walk where it is below the walk over every key's) — chosen from the
   model, never from a truth.
   After a refit, every released probabilistic link is scored again under the key it
   linked by; one that falls below that key's new threshold stays linked and is listed
   for review (``refit``).
3. **Decisions**, over the candidates' scored pairs best first (a pair in blocks of
   several keys judged under one, :func:`broker.matching.prefer_key`: the best of those
   whose own threshold it clears, else its best): a pair at or above its key's
   link threshold merges the two persons into the older id, unless both persons are
   already linked across datasets (no chaining: ``rival``), or the pair is not more
   likely than all the other candidates of its two records in each other's
   one-record-per-person dataset together (the ambiguity rule's form here,
   :func:`broker.linkage.rules.outscores_rivals`: also ``rival``), or the merge would
   put two records of one one-record-per-person dataset in one person (the twin guard:
   ``twin``, which also makes such datasets one to one); a pair between the review and
   the link thresholds is a possible match (``grey``). Refused and grey pairs are stored
   as possible matches, never linked. The record of the pair on the moving side keeps
   the link's basis (partner, blocking key, agreement vector, weight, probability).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Final

from broker.linkage.counters import person_counters, prob_counter, tally
from broker.linkage.model import LinkStats
from broker.linkage.rules import candidate_odds, compatible, outscores_rivals
from broker.linkage.scoring import score_candidates
from broker.matching import Model, ScoredPair, model_to_json
from broker.matching.incremental import fit_counts, key_thresholds
from broker.store.linkage_codec import (
    StoredRecord,
    decode_members,
    encode_members,
    stored_dsn,
    stored_pid,
)
from broker.store.linkage_counts import CANDIDATE, KNOWN, SAME, parse_field
from broker.store.linkage_evidence import (
    POSSIBLE_REASONS,
    PossibleEntry,
    decode_basis,
    decode_possible,
    encode_basis,
    encode_possible,
    raw_agreement,
)
from broker.store.linkage_store import LinkageStore, WriteSet

__all__ = ["MIN_FIT_PAIRS", "REFIT_GROWTH", "ProbabilisticStage"]

REFIT_GROWTH: Final = 1.1
"""Refit when the evidence held has grown by this factor since the last fit."""
MIN_FIT_PAIRS: Final = 20
"""Candidate pairs the cascade has already linked (known matches) a fit needs before its
model is used at all: without them EM takes the look-alike strangers of two datasets
that share nobody (two GP practices) for matches."""


_GREY: Final = POSSIBLE_REASONS.index("grey")
_RIVAL: Final = POSSIBLE_REASONS.index("rival")
_TWIN: Final = POSSIBLE_REASONS.index("twin")
_REFIT: Final = POSSIBLE_REASONS.index("refit")


class ProbabilisticStage:
    """One slice's probabilistic decisions, applied onto the mirror and into the writes."""

    def __init__(
        self,
        store: LinkageStore,
        opp: dict[int, bool],
        stats: LinkStats,
    ) -> None:
        self.store = store
        self.mirror = store.mirror
        self.opp = opp
        self.stats = stats
        self.writes = WriteSet()
        self.persons: dict[int, list[tuple[int, int]]] = {}
        self.orig_persons: dict[int, tuple[tuple[int, int], ...]] = {}
        self.pids: dict[int, int] = {}
        self.possible: dict[int, list[PossibleEntry]] = {}

    # The model -------------------------------------------------------------------------------

    def model(self) -> Model | None:
        """The model to link with, refitted first when the holding has grown enough."""
        mirror = self.mirror
        model = mirror.model
        held = len(mirror.evidence)
        if mirror.layout is None:
            return None
        last = model.records if model is not None else mirror.fit_attempt
        if last and held < last * REFIT_GROWTH:
            return model
        # A fit with too few pairs waits for the same growth; kept in Redis so that a new
        # worker tries its next fit where this one would.
        mirror.fit_attempt = held
        self.writes.meta["fit"] = held
        refitted = self.refit()
        return refitted if refitted is not None else model

    def refit(self) -> Model | None:
        """Fit the scope's model from the held pattern counts and stage it; ``None`` if too
        little.

        EM runs over the agreement-pattern counts the mirror keeps as evidence comes and
        goes (:mod:`broker.store.linkage_counts`), never over the records themselves, so
        a refit costs the same on any holding. Released probabilistic links that the new
        model scores below its link threshold are listed for review (never unlinked).
        """
        mirror = self.mirror
        layout = mirror.layout
        if layout is None:
            return None
        n_blocks = len(layout.blocks)
        declared = {d for d, opp in self.opp.items() if opp}
        counted: dict[int, list[Counter[tuple[int, ...]]]] = {
            kind: [Counter() for _ in range(n_blocks)] for kind in (CANDIDATE, KNOWN, SAME)
        }
        # Counts on a sample of blocks stand for the holding's: each sampled pair for
        # 2**shift, so that EM's pseudo-counts and anchors weigh what they weigh on the
        # whole holding (unscaled, they would pull a rare level's u up by the rate).
        scale = 1 << mirror.shift
        for field, count in mirror.counts.items():
            kind, j, dsn, vector = parse_field(field)
            if j < n_blocks and (kind != SAME or dsn in declared):
                counted[kind][j][vector] += count * scale
        known = counted[KNOWN]
        if sum(sum(c.values()) for c in known) < MIN_FIT_PAIRS:
            return None
        fitted = fit_counts(layout, counted[CANDIDATE], counted[SAME], known)
        thresholds = key_thresholds(
            [
                [(block.probability(vector), count) for vector, count in patterns.items()]
                for block, patterns in zip(fitted.blocks, counted[CANDIDATE], strict=True)
            ],
            [sum(patterns.values()) for patterns in known],
            min_known=MIN_FIT_PAIRS,
        )
        records = len(mirror.evidence)
        model = Model(layout, fitted.blocks, fitted.max_block, thresholds, records)
        self.writes.model = (model, model_to_json(model))
        mirror.model = model
        self._review_released(model)
        return model

    def _review_released(self, model: Model) -> None:
        """List each released probabilistic link the model now scores below its threshold."""
        mirror = self.mirror
        for rid in sorted(mirror.basis):
            partner, block, _, _, _ = decode_basis(mirror.basis[rid])
            if rid not in mirror.evidence or partner not in mirror.evidence:
                continue
            if block >= len(model.blocks):
                continue
            columns = model.layout.blocks[block].columns
            vector = raw_agreement(columns, mirror.evidence[rid], mirror.evidence[partner])
            probability = model.blocks[block].probability(vector)
            if probability >= model.thresholds.link_of(block):
                continue
            entries = self._possible_of(rid)
            if any(e[0] == partner and e[2] == _REFIT for e in entries):
                continue
            weight = model.blocks[block].match_weight(vector)
            entries.append((partner, block, _REFIT, probability, weight, vector))

    # Reading ---------------------------------------------------------------------------------

    def _possible_of(self, rid: int) -> list[PossibleEntry]:
        if rid not in self.possible:
            raw = self.mirror.possible.get(rid)
            self.possible[rid] = decode_possible(raw) if raw else []
        return self.possible[rid]

    def _pid(self, rid: int) -> int:
        if rid not in self.pids:
            self.pids[rid] = stored_pid(self.mirror.records[rid])
        return self.pids[rid]

    def _members(self, pid: int) -> list[tuple[int, int]]:
        if pid not in self.persons:
            raw = self.mirror.persons.get(pid, b"")
            members = decode_members(raw)
            self.persons[pid] = members
            self.orig_persons[pid] = tuple(members)
        return self.persons[pid]

    def _one_dataset(self, pid: int) -> bool:
        return len({d for _, d in self._members(pid)}) <= 1

    # Deciding --------------------------------------------------------------------------------

    def run(self, candidates: Iterable[int], writes: WriteSet) -> None:
        """Decide the candidates' pairs and apply them onto the mirror and into ``writes``."""
        mirror = self.mirror
        model = self.model()
        chosen = sorted(
            rid
            for rid in set(candidates)
            if rid in mirror.evidence and rid in mirror.records and self._pid(rid)
        )
        if model is not None:
            new = [rid for rid in chosen if self._one_dataset(self._pid(rid))]
            for rid in new:  # decided afresh: earlier possible matches of it are replaced
                self.possible[rid] = [
                    e for e in self._possible_of(rid) if e[2] == _REFIT and e[0] in mirror.records
                ]
            if new:
                self._decide(model, new)
        self._apply(writes)

    def _decide(self, model: Model, new: list[int]) -> None:
        new_set = set(new)
        thresholds = model.thresholds
        mirror = self.mirror
        pairs = score_candidates(model, mirror, new)
        dsn_of = {rid: stored_dsn(mirror.records[rid]) for p in pairs for rid in (p.left, p.right)}
        rivals = candidate_odds(
            ((p.left, p.right, p.match_weight) for p in pairs if self._available(p)),
            dsn_of,
            self.opp,
        )
        for pair in pairs:
            owner = pair.right if pair.right in new_set else pair.left
            other = pair.left if owner == pair.right else pair.right
            if not thresholds.links(pair):
                self._keep(owner, other, pair, _GREY)
                continue
            left, right = self._pid(pair.left), self._pid(pair.right)
            if left == right:
                continue
            if not (self._one_dataset(left) or self._one_dataset(right)):
                self._keep(owner, other, pair, _RIVAL)
                continue
            if not outscores_rivals(
                pair.left, pair.right, pair.match_weight, rivals, dsn_of, thresholds.review
            ):
                self._keep(owner, other, pair, _RIVAL)
                continue
            into, moving = min(left, right), max(left, right)
            into_members, moving_members = self._members(into), self._members(moving)
            opp = self.opp
            kept = {d for _, d in into_members if opp.get(d, False)}
            if not compatible(kept, (d for _, d in moving_members), opp):
                self._keep(owner, other, pair, _TWIN)
                continue
            self._merge(into, moving, pair)

    def _available(self, pair: ScoredPair) -> bool:
        """Whether the pair's two persons could merge as they stand (the twin guard): a
        candidate already linked to a record of the other's dataset is no rival."""
        left, right = self._pid(pair.left), self._pid(pair.right)
        if left == right:
            return False
        opp = self.opp
        kept = {d for _, d in self._members(left) if opp.get(d, False)}
        return compatible(kept, (d for _, d in self._members(right)), opp)

    def _keep(self, owner: int, other: int, pair: ScoredPair, reason: int) -> None:
        entries = self._possible_of(owner)
        entries.append(
            (other, pair.block, reason, pair.probability, pair.match_weight, pair.agreement)
        )

    def _merge(self, into: int, moving: int, pair: ScoredPair) -> None:
        """Merge person ``moving`` into the older ``into``; the pair's record on the moving
        side keeps the link's basis."""
        members = self.persons.pop(moving)
        self.persons[into].extend(members)
        for rid, _ in members:
            self.pids[rid] = into
        mover = pair.left if pair.left in {r for r, _ in members} else pair.right
        partner = pair.right if mover == pair.left else pair.left
        basis = (partner, pair.block, pair.probability, pair.match_weight, pair.agreement)
        writes, mirror = self.writes, self.mirror
        if mover not in mirror.basis:
            writes.count(prob_counter(stored_dsn(mirror.records[mover])), 1)
        writes.basis[mover] = encode_basis(basis)
        self.stats.persons_merged += 1
        self.stats.probabilistic_links += 1

    # Applying --------------------------------------------------------------------------------

    def _apply(self, writes: WriteSet) -> None:
        mirror, mine = self.mirror, self.writes
        for rid, pid in self.pids.items():
            raw = mirror.records[rid]
            if stored_pid(raw) != pid:
                record = StoredRecord.decode(rid, raw)
                record.pid = pid
                mine.records[rid] = record.encode()
        for pid, before in self.orig_persons.items():
            after = self.persons.get(pid)
            if after is not None and tuple(after) == before:
                continue
            mine.persons[pid] = encode_members(after) if after else None
            tally(mine.counters, person_counters(before), -1)
            tally(mine.counters, person_counters(after), 1)
        for rid, entries in self.possible.items():
            packed = encode_possible(entries) if entries else None
            if packed != mirror.possible.get(rid):
                mine.possible[rid] = packed
        mine.counters = {name: value for name, value in mine.counters.items() if value}
        self.store.stage(mine)
        writes.update(mine)
