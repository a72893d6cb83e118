"""The spec linter: refuses match keys whose values are too common to hide.

Tokens are deterministic, so the broker (or anyone who copies a batch) sees which records
share a token and how often. A key whose values are few — family name + sex, year of
birth + district — yields tokens with a telling frequency profile: the most frequent
token of "family name + sex" is almost certainly SMITH, M. Such a key invites a frequency
attack and links strangers besides, so the linter refuses it.

The estimate runs on the organisation's own data, before anything leaves: for each match
key, over the records where the key is present (every field present), the *distinct
fraction* = distinct values ÷ records. In a dataset with one record per person a good key
is close to 1 (only twins, duplicates and true namesakes share a value); a key below
``min_distinct`` (default 0.9) is refused. The fraction of records in the key's largest
group is reported too. Values are counted in memory and never written or shown. They are
the tokeniser's own inputs (:meth:`client_sdk.tokenise.Tokeniser.key_values_of_row`), so a
key is judged exactly as its tokens will be: every transform applied, and an unordered
group's values in either order counted as one value.

Distinct fractions grow as a dataset shrinks, so on fewer than ``MIN_RECORDS`` records
the linter says it cannot judge a key rather than passing it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import islice

from client_sdk.record import NormalisedRecord
from client_sdk.tokenise import TokeniseParams, Tokeniser
from keys.derive import DomainKey
from keys.spec import LinkageSpec

__all__ = [
    "DEFAULT_MIN_DISTINCT",
    "MIN_RECORDS",
    "KeyLint",
    "lint_spec",
]

DEFAULT_MIN_DISTINCT = 0.9
MIN_RECORDS = 1_000
_SAMPLE = 500_000


@dataclass(frozen=True, slots=True)
class KeyLint:
    """The linter's verdict on one match key.

    Attributes:
        name: match key name.
        present: records on which the key is present.
        distinct: distinct values among them.
        largest_group: records sharing the key's most common value.
        verdict: ``"ok"``, ``"refused"`` or ``"unjudged"`` (too few records).
        reason: why, in words, without any value.
    """

    name: str
    present: int
    distinct: int
    largest_group: int
    verdict: str
    reason: str

    @property
    def distinct_fraction(self) -> float:
        """Distinct values ÷ records with the key (1.0 when none)."""
        return self.distinct / self.present if self.present else 1.0


def lint_spec(
    spec: LinkageSpec,
    records: Iterable[NormalisedRecord],
    *,
    min_distinct: float = DEFAULT_MIN_DISTINCT,
    sample: int = _SAMPLE,
) -> list[KeyLint]:
    """Estimate each match key's distinct fraction on ``records`` and judge it.

    Args:
        spec: the linkage spec to check.
        records: the organisation's own normalised records (the first ``sample`` are used).
        min_distinct: the least distinct fraction a key may have.
        sample: at most this many records are read.

    Returns:
        One :class:`KeyLint` per match key, in spec order.
    """
    # A throwaway key: only equality of values matters here, and nothing is kept.
    tokeniser = Tokeniser(
        TokeniseParams(
            spec=spec,
            domain_key=DomainKey(bytes(32)),
            domain="lint",
            key_version="lint",
            reference_secret=bytes(32),
            dataset="lint",
        )
    )
    counters: list[Counter[int]] = [Counter() for _ in spec.match_keys]
    for record in islice(records, sample):
        for counter, value in zip(
            counters, tokeniser.key_values_of_row(tokeniser.row(record)), strict=True
        ):
            if value is not None:
                counter[hash(value)] += 1
    verdicts: list[KeyLint] = []
    for key, counter in zip(spec.match_keys, counters, strict=True):
        present = sum(counter.values())
        distinct = len(counter)
        largest = max(counter.values(), default=0)
        fraction = distinct / present if present else 1.0
        if present < MIN_RECORDS:
            verdict = "unjudged"
            reason = f"present on {present} records: at least {MIN_RECORDS} are needed to judge"
        elif fraction < min_distinct:
            verdict = "refused"
            reason = (
                f"only {fraction:.1%} of its values are distinct (at least {min_distinct:.0%} "
                f"needed) and its commonest value covers {largest} records: tokens this "
                "common reveal their values by frequency and link strangers"
            )
        else:
            verdict = "ok"
            reason = "distinct enough to hide"
        verdicts.append(KeyLint(key.name, present, distinct, largest, verdict, reason))
    return verdicts
