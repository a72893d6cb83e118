"""Scoring a slice's candidates from the stored evidence in place: only the pairs that matter.

:func:`broker.matching.score_pairs` scores every candidate pair of the records it is
handed, decoded into :class:`~broker.matching.RecordEvidence`. Inside the engine that
was most of the stage's cost past the counting: every neighbour of every candidate was
decoded, and every pair became a :class:`~broker.matching.ScoredPair`, though nearly all
of them are strangers the stage drops at once (below the review threshold). Here the
pairs are read from the mirror's stored evidence in place
(:func:`~broker.store.linkage_evidence.raw_levels`), each agreement vector's model
weight is computed once per call, and a pair becomes a ``ScoredPair`` only when it can
reach the review threshold: its model weight plus the most the term-frequency
adjustments of its exact agreements could add (each at most ``log2((n + 8) / 10)``
bits in a block of ``n``, :func:`broker.matching.tf_adjustment`). The pairs kept are
scored exactly as ``score_pairs`` scores them, so the result is ``score_pairs(model,
new, every held record)`` without the pairs below the review threshold, in the same
order (a test holds the two equal).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Final

from broker.matching import Model, ScoredPair, prefer_key, tf_adjustment, weight_probability
from broker.matching.score import tf_columns
from broker.store.linkage_codec import (
    MEMBER_BYTES,
    iter_holders,
    member_dsn,
    member_rid,
    stored_dsn,
)
from broker.store.linkage_evidence import (
    block_keys,
    column_tokens,
    holds_token,
    levels_vector,
    raw_levels,
)
from broker.store.linkage_mirror import LinkageMirror

__all__ = ["score_candidates"]

_SLACK: Final = 1e-9
"""Bits added to a pair's bound, so that rounding never drops a pair at the threshold."""


def score_candidates(model: Model, mirror: LinkageMirror, new: Iterable[int]) -> list[ScoredPair]:
    """Every pair of a record of ``new`` with a record of another dataset that shares one
    of its blocks, scored at or above the review threshold, best first.

    Args:
        model: the fitted model (its ``max_block``: a larger block makes no pairs).
        mirror: the scope's mirror, holding the records' evidence and the block index.
        new: record numbers, each holding evidence.

    Returns:
        As :func:`broker.matching.score_pairs` over ``new`` and every held record, less
        the pairs whose probability is below ``model.thresholds.review``.
    """
    return _Scorer(model, mirror).score(new)


def _commonest_first(tf: tuple[tuple[int, int, float, float], ...]) -> list[int]:
    """The indexes of ``tf`` (:func:`broker.matching.score.tf_columns`), highest ``u``
    first (in order on a tie)."""
    return [i for _, i in sorted((-u_exact, i) for i, (_, _, u_exact, _) in enumerate(tf))]


class _Scorer:
    """One call's caches: weights per agreement vector, token counts per block."""

    def __init__(self, model: Model, mirror: LinkageMirror) -> None:
        self.model = model
        self.mirror = mirror
        layouts = model.layout.blocks
        self.columns = [layout.columns for layout in layouts]
        self.tf = [
            tf_columns(layout, block) for layout, block in zip(layouts, model.blocks, strict=True)
        ]
        # the exact columns' order of working out (highest u first), per key
        self.tf_order = [_commonest_first(tf) for tf in self.tf]
        self.weights: list[dict[bytes, tuple[float, int]]] = [{} for _ in layouts]
        self.holders: dict[tuple[bytes, int, bytes], int] = {}

    def _weight(self, j: int, levels: bytes) -> tuple[float, int]:
        """The model's weight of an agreement vector (as :func:`raw_levels` bytes) under
        key ``j``, and its exact agreements on columns that term frequencies adjust."""
        cached = self.weights[j].get(levels)
        if cached is None:
            exact = 0
            for c, _, _, _ in self.tf[j]:
                if levels[c] == 1:
                    exact += 1
            cached = (self.model.blocks[j].match_weight(levels_vector(levels)), exact)
            self.weights[j][levels] = cached
        return cached

    def score(self, new: Iterable[int]) -> list[ScoredPair]:
        """:func:`score_candidates`. A pair of two new records is scored from the smaller
        one's side; a pair in blocks of several keys keeps the score
        :func:`~broker.matching.prefer_key` prefers (the first on a tie), as
        ``score_pairs`` keeps it."""
        mirror = self.mirror
        evidence, records, blocks = mirror.evidence_at, mirror.records, mirror.blocks
        n_keys = len(self.columns)
        limit = self.model.max_block * MEMBER_BYTES
        review = self.model.thresholds.review
        fresh = set(new)
        best: dict[tuple[int, int], ScoredPair] = {}
        for rid in sorted(fresh):
            raw = evidence[rid]
            dsn = stored_dsn(records[rid])
            for key in block_keys(raw):
                members = blocks.get(key, b"")
                size = len(members)
                j = key[0]
                if size < 2 * MEMBER_BYTES or size > limit or j >= n_keys:
                    continue
                n = size // MEMBER_BYTES
                bound = _SLACK + (math.log2((n + 8) / 10.0) if n > 2 else 0.0)
                columns = self.columns[j]
                visited: list[bytes] = []
                passed: list[tuple[int, bytes, float]] = []
                for at in range(0, size, MEMBER_BYTES):
                    if member_dsn(members, at) == dsn:
                        continue
                    other = member_rid(members, at)
                    if other < rid and other in fresh:
                        continue
                    levels = raw_levels(columns, raw, evidence[other])
                    visited.append(levels)
                    weight, exact = self._weight(j, levels)
                    if weight_probability(weight + exact * bound) >= review:
                        passed.append((other, levels, weight))
                if not passed:
                    continue
                self._count_holders(key, members, rid, dsn, fresh, visited, passed)
                for other, levels, weight in passed:
                    vector = levels_vector(levels)
                    pair = self._scored(key, members, rid, other, vector, weight, bound)
                    if pair is None:
                        continue
                    held = best.get((pair.left, pair.right))
                    if held is None or prefer_key(self.model.thresholds, pair, held):
                        best[(pair.left, pair.right)] = pair
        # A pair's bound may pass under a key whose exact score then falls below review:
        # its best key's score is below review too (any key it was not scored under
        # is), so it goes, as score_pairs' caller drops it.
        kept = [p for p in best.values() if p.probability >= review]
        return sorted(kept, key=lambda p: (-p.probability, -p.match_weight, p.left, p.right))

    def _count_holders(
        self,
        key: bytes,
        members: bytes,
        rid: int,
        dsn: int,
        fresh: set[int],
        visited: list[bytes],
        passed: list[tuple[int, bytes, float]],
    ) -> None:
        """Count, in one walk over the block, the holders of each exact token of ``rid``
        that a pair of it that may reach review (``passed``) agrees on, into the cache
        :meth:`_holders` reads.

        Only a column where ``rid`` holds one token is counted here (with several, the
        pair's shared tokens decide which, and :meth:`_holders` counts each). Such a
        token's holders are ``rid`` and the members whose cell shares a token with its
        cell: for the members the walk over the block compared with ``rid``
        (``visited``, in the block's order, the members of ``rid``'s own dataset and the
        new records before it left out), the agreement vector's exact level already
        says so; only the others' evidence is read.
        """
        j = key[0]
        evidence = self.mirror.evidence_at
        raw = evidence[rid]
        wanted: list[tuple[int, int, bytes]] = []  # (comparison, exact column, token)
        for c, column, _, _ in self.tf[j]:
            if not any(levels[c] == 1 for _, levels, _ in passed):
                continue
            tokens = column_tokens(raw, column)
            if len(tokens) == 1 and (key, column, tokens[0]) not in self.holders:
                wanted.append((c, column, tokens[0]))
        if not wanted:
            return
        counts = [0] * len(wanted)
        compared = 0
        for at in range(0, len(members), MEMBER_BYTES):
            other = member_rid(members, at)
            if member_dsn(members, at) == dsn or (other < rid and other in fresh):
                held = evidence[other]
                for i, (_, column, token) in enumerate(wanted):
                    if holds_token(held, column, token):
                        counts[i] += 1
            else:
                levels = visited[compared]
                compared += 1
                for i, (c, _, _) in enumerate(wanted):
                    if levels[c] == 1:
                        counts[i] += 1
        for (_, column, token), count in zip(wanted, counts, strict=True):
            self.holders[(key, column, token)] = count

    def _scored(
        self,
        key: bytes,
        members: bytes,
        a: int,
        b: int,
        vector: tuple[int, ...],
        weight: float,
        bound: float,
    ) -> ScoredPair | None:
        """The pair scored as ``broker.matching.score_pairs`` scores it in this block, or
        ``None`` once its score cannot reach the review threshold.

        The exact agreements' adjustments are worked out commonest value first (the
        highest ``u``: a common value's adjustment is negative, and its holders are
        counted once for every candidate of the block), each unknown one taken at its
        most, ``bound``; a pair whose best case falls below review goes before the
        holders of its other tokens are counted. The kept pairs' adjustments are summed
        in the columns' order, as ``score_pairs`` sums them.
        """
        j = key[0]
        n = len(members) // MEMBER_BYTES
        evidence = self.mirror.evidence_at
        review = self.model.thresholds.review
        columns = self.tf[j]
        adjustments = [0.0] * len(columns)
        exact = [i for i in self.tf_order[j] if vector[columns[i][0]] == 0]
        unknown = len(exact)
        known = weight
        for i in exact:
            _, column, u_exact, gap = columns[i]
            shared = set(column_tokens(evidence[a], column)).intersection(
                column_tokens(evidence[b], column)
            )
            # several shared tokens: the commonest, conservative
            holders = max(self._holders(key, members, column, t) for t in shared)
            adjustment = tf_adjustment(u_exact, gap, holders, n)
            adjustments[i] = adjustment
            known += adjustment
            unknown -= 1
            if unknown and weight_probability(known + unknown * bound) < review:
                return None
        tf = 0.0
        for i, (c, _, _, _) in enumerate(columns):
            if vector[c] == 0:
                tf += adjustments[i]
        total = weight + tf
        left, right = min(a, b), max(a, b)
        return ScoredPair(left, right, j, vector, total, weight_probability(total), tf)

    def _holders(self, key: bytes, members: bytes, column: int, token: bytes) -> int:
        """How many of the block's records hold ``token`` in ``column`` (counted once
        per call: the pairs kept are few, so only their tokens are counted; most were
        counted already, :meth:`_count_holders`)."""
        at = (key, column, token)
        count = self.holders.get(at)
        if count is None:
            evidence = self.mirror.evidence_at
            count = 0
            for rid, _ in iter_holders(members):
                if holds_token(evidence[rid], column, token):
                    count += 1
            self.holders[at] = count
        return count
