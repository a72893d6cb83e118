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

Two checks need no data. :func:`static_problems` refuses a key built only of fields with
few possible values (sex, year of birth, an initial, a postcode district: the table
:data:`FIELD_VALUES`) when together they cannot take :data:`STATIC_MIN_VALUES` values: on a
domain's population of a million or more such a key can never be distinct, whatever one
organisation's sample says. ``tokenise`` runs it and refuses such a spec.
:func:`key_formation` says, from the counts of one extract, which keys form for fewer than
:data:`MIN_FORMING_SHARE` of its records (a key forms when every one of its fields is
present): a key that never forms links nothing, and :func:`formation_failure` names the
spec as unusable on the extract when its strongest key, or most of its keys, do not form.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import islice

from client_sdk.quality import QualityReport
from client_sdk.record import NormalisedRecord
from client_sdk.tokenise import TokeniseParams, Tokeniser
from keys.derive import DomainKey
from keys.spec import LinkageSpec, MatchKey

__all__ = [
    "DEFAULT_MIN_DISTINCT",
    "FIELD_VALUES",
    "MIN_FORMING_SHARE",
    "MIN_RECORDS",
    "STATIC_MIN_VALUES",
    "KeyFormation",
    "KeyLint",
    "formation_failure",
    "key_formation",
    "lint_spec",
    "static_problems",
]

DEFAULT_MIN_DISTINCT = 0.9
MIN_RECORDS = 1_000
_SAMPLE = 500_000

MIN_FORMING_SHARE = 0.10
"""A key that forms for fewer than this share of an extract's records is named (10%)."""

STATIC_MIN_VALUES = 1_000_000
"""A key of only few-valued fields must be able to take at least this many values."""

FIELD_VALUES: dict[tuple[str, str | None], int] = {
    ("sex", None): 2,
    ("date_of_birth", "year"): 150,
    ("date_of_birth", None): 150 * 366,
    ("date_of_birth", "swap"): 150 * 366,
    ("postcode", "district"): 3_000,
    ("postcode", "sector"): 12_000,
    ("given_name", "initial"): 26,
    ("given_name_key", "initial"): 26,
    ("middle_names", "initial"): 26,
    ("family_name", "initial"): 26,
    ("given_name", "soundex"): 26 * 7**3,
    ("given_name_key", "soundex"): 26 * 7**3,
    ("middle_names", "soundex"): 26 * 7**3,
    ("family_name", "soundex"): 26 * 7**3,
}
"""(field, transform) → about how many values it can take; any other field is open-ended.

Generous upper bounds: sexes kept (M, F), years of birth in 150 years, UK postcode
districts (about 3,000) and sectors (about 12,000), letters, Soundex codes (a letter and
three digits of 1 to 6 or none).
"""

# Quality report fields that a spec field reads (given_name_key is the given name's key).
_QUALITY_FIELD = {"given_name_key": "given_name"}


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
    assigned_birthdays: frozenset[str] = frozenset(),
) -> list[KeyLint]:
    """Estimate each match key's distinct fraction on ``records`` and judge it.

    Args:
        spec: the linkage spec to check.
        records: the organisation's own normalised records (the first ``sample`` are used).
        min_distinct: the least distinct fraction a key may have.
        sample: at most this many records are read.
        assigned_birthdays: the days the extract heaps its dates of birth on
            (:func:`client_sdk.quality.assigned_birthdays`): keys that rest on the day of
            birth are not counted on them, as tokenising does not form them there.

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
            assigned_birthdays=assigned_birthdays,
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
    static = {key.name: problem for key, problem in _static_verdicts(spec)}
    for key, counter in zip(spec.match_keys, counters, strict=True):
        present = sum(counter.values())
        distinct = len(counter)
        largest = max(counter.values(), default=0)
        fraction = distinct / present if present else 1.0
        if key.name in static:
            verdict = "refused"
            reason = static[key.name]
        elif present < MIN_RECORDS:
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


def _possible_values(key: MatchKey) -> int | None:
    """How many values ``key`` can take at most, or ``None`` when a field is open-ended."""
    total = 1
    for leaf in key.leaves:
        values = FIELD_VALUES.get((leaf.field, leaf.transform))
        if values is None:
            return None
        total *= values
    return total


def _static_verdicts(spec: LinkageSpec) -> list[tuple[MatchKey, str]]:
    """Each key refused without data, with the reason (no key name in it)."""
    refused: list[tuple[MatchKey, str]] = []
    for key in spec.match_keys:
        values = _possible_values(key)
        if values is not None and values < STATIC_MIN_VALUES:
            fields = ", ".join(leaf.label() for leaf in key.leaves)
            refused.append(
                (
                    key,
                    f"its fields ({fields}) take at most {values:,} values, fewer than "
                    f"{STATIC_MIN_VALUES:,}: tokens this common reveal their values by "
                    "frequency and link strangers",
                )
            )
    return refused


def static_problems(spec: LinkageSpec) -> list[str]:
    """The match keys refused without looking at any data, one line each.

    A key whose every field has few possible values (:data:`FIELD_VALUES`) and which
    together cannot take :data:`STATIC_MIN_VALUES` values is refused: a domain's
    population cannot be told apart by it, so its tokens reveal their values by frequency
    and link strangers on every extract.

    Args:
        spec: the linkage spec.

    Returns:
        One problem per refused key (empty when the spec passes).
    """
    return [
        f"match key {key.name!r} is too common to hide: {reason}"
        for key, reason in _static_verdicts(spec)
    ]


@dataclass(frozen=True, slots=True)
class KeyFormation:
    """How often one match key forms on an extract.

    Attributes:
        name: match key name.
        formed: records on which every field of the key is present.
        records: records of the extract.
        absent_fields: the key's fields that no record has (why it never forms).
    """

    name: str
    formed: int
    records: int
    absent_fields: tuple[str, ...]

    @property
    def share(self) -> float:
        """``formed`` ÷ ``records`` (0.0 when there are no records)."""
        return self.formed / self.records if self.records else 0.0

    @property
    def rare(self) -> bool:
        """Whether the key forms for fewer than :data:`MIN_FORMING_SHARE` of the records."""
        return self.formed < MIN_FORMING_SHARE * self.records or self.formed == 0

    def warning(self) -> str:
        """One line saying how rarely the key forms, and why when it never does."""
        if self.formed == 0:
            why = (
                f": no record has {' or '.join(self.absent_fields)}"
                if self.absent_fields
                else ": no record has all its fields"
            )
            return f"match key {self.name!r} never forms on these {self.records:,} records{why}"
        return (
            f"match key {self.name!r} forms for only {self.formed:,} of {self.records:,} records "
            f"({self.share:.1%}, fewer than {MIN_FORMING_SHARE:.0%})"
        )


def key_formation(
    spec: LinkageSpec,
    formed: Mapping[str, int],
    *,
    records: int,
    report: QualityReport | None = None,
) -> list[KeyFormation]:
    """Each match key's formation on an extract, strongest first.

    Args:
        spec: the linkage spec.
        formed: match key name → records on which it formed (its token count).
        records: records of the extract.
        report: the extract's quality report, to name the fields no record has.

    Returns:
        One :class:`KeyFormation` per match key, in spec order.
    """
    valid: dict[str, int] = {}
    if report is not None:
        valid = {quality.field: quality.valid for quality in report.fields}
    formations: list[KeyFormation] = []
    for key in spec.match_keys:
        absent = [
            leaf.field
            for leaf in key.leaves
            if valid.get(_QUALITY_FIELD.get(leaf.field, leaf.field), 1) == 0
        ]
        formations.append(
            KeyFormation(key.name, formed.get(key.name, 0), records, tuple(dict.fromkeys(absent)))
        )
    return formations


def formation_failure(formations: list[KeyFormation]) -> str | None:
    """Why the spec cannot link this extract, or ``None``: its strongest key, or most keys, rare.

    Args:
        formations: :func:`key_formation` of the spec on the extract.

    Returns:
        One line, or ``None`` when the strongest key forms and at most half the keys are rare.
    """
    if not formations:
        return None
    rare = [f for f in formations if f.rare]
    if formations[0].rare:
        return (
            f"the spec's strongest match key {formations[0].name!r} forms for "
            f"{formations[0].share:.1%} of records (at least {MIN_FORMING_SHARE:.0%} needed)"
        )
    if len(rare) > len(formations) / 2:
        return (
            f"{len(rare)} of the spec's {len(formations)} match keys form for fewer than "
            f"{MIN_FORMING_SHARE:.0%} of records"
        )
    return None
