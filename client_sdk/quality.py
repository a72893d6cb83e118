"""The quality report (the "quality kitemark"): what the SDK saw in an extract, and a grade.

Per field: how many values were valid, missing, invalid or placeholders, and for the date
of birth how many were partial (a year, or a year and month, alone). Per file: rows
read, used and rejected (with line numbers and reasons, never values), records that share
an NHS number with an earlier record (a count, never the numbers), and a grade — Gold,
Silver, Bronze or Not rated — from the thresholds below (docs/quality.md gives the reasons).
It also names any day of the year on which far more people were born than on the days
around it (:func:`find_birth_day_heaping`): a sign that a system wrote a default date
(1 January, 1 July) for unknown birthdays. The same report travels with every token batch.

Counting is on the hot path, so :class:`QualityCollector` counts each combination of
field outcomes once per record (one dictionary update), and keeps the first nine digits of
each valid NHS number in a compact array (4 bytes a record: 40 MB for 10 million) that
pyarrow counts when the report is built. A bitmap over all possible numbers would be
flat (125 MB) but each random access costs a cache miss: ten times slower. Valid dates of
birth are counted whole, one dictionary update on a string whose hash is already cached
(at most about 46,000 dates in 125 years), and folded into days of the year by the report.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict

from client_sdk.normalise.defect import Defect

__all__ = [
    "FIELDS",
    "GRADE_THRESHOLDS",
    "HEAPING_ALPHA",
    "HEAPING_MIN_RATIO",
    "HEAPING_MIN_RECORDS",
    "BirthDayHeaping",
    "FieldQuality",
    "Grade",
    "Position",
    "QualityCollector",
    "QualityReport",
    "RowProblem",
    "Threshold",
    "assigned_birthdays",
    "find_birth_day_heaping",
    "grade_report",
]

FIELDS = (
    "nhs_number",
    "given_name",
    "middle_names",
    "family_name",
    "date_of_birth",
    "sex",
    "postcode",
    "address_line",
    "other_id",
    "locality",
    "region",
)
"""The fields counted, in the order of the outcomes passed to :meth:`QualityCollector.observe`."""

Grade = Literal["Gold", "Silver", "Bronze", "Not rated"]
Position = Literal["line", "entry", "resource"]
"""What a problem's ``line`` counts: a CSV or NDJSON line, a Bundle entry, a resource."""

MAX_LISTED_PROBLEMS = 1000
_INVALID = int(Defect.INVALID)

HEAPING_MIN_RATIO = 3.0
"""A day is heaped at three times its expected count or more: far beyond the seasonal
variation of births (the busiest days of the year see about 1.1 to 1.2 times the mean)."""
HEAPING_ALPHA = 0.001
"""Chance of naming any day of an extract without heaping, over all 366 days."""
HEAPING_MIN_RECORDS = 10
"""A day is named only when at least this many dates of birth fall on it."""
_HEAPING_WINDOW = 7  # days each side whose mean is the expected count
_DAYS_IN_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_MONTH_DAYS = frozenset(
    (m, d) for m, n in enumerate(_DAYS_IN_MONTH, start=1) for d in range(1, n + 1)
)
# The 365 ordinary days in order, read as a ring (31 December is next to 1 January).
_YEAR_RING = sorted(_MONTH_DAYS - {(2, 29)})
_RING_INDEX = {md: i for i, md in enumerate(_YEAR_RING)}
# 97 leap days in every 400 years of 146,097 days (the Gregorian calendar).
_DAYS_PER_YEAR = 146_097 / 400
_LEAP_DAY_WEIGHT = 97 / 400


@dataclass(frozen=True, slots=True)
class Threshold:
    """One grade's requirements. Completeness is valid values ÷ records used.

    Attributes:
        completeness: field → minimum completeness.
        max_rejected: maximum rejected rows ÷ rows read.
        max_duplicates: maximum records sharing an earlier record's NHS number ÷ records
            with a valid NHS number.
        either: alternatives, any one of which must hold in full (field → minimum).
    """

    completeness: dict[str, float]
    max_rejected: float
    max_duplicates: float
    either: tuple[dict[str, float], ...] = ()


GRADE_THRESHOLDS: dict[Grade, Threshold] = {
    "Gold": Threshold(
        completeness={
            "nhs_number": 0.95,
            "given_name": 0.98,
            "family_name": 0.98,
            "date_of_birth": 0.98,
            "sex": 0.95,
            "postcode": 0.95,
        },
        max_rejected=0.001,
        max_duplicates=0.005,
    ),
    "Silver": Threshold(
        completeness={
            "given_name": 0.95,
            "family_name": 0.95,
            "date_of_birth": 0.95,
            "postcode": 0.85,
        },
        max_rejected=0.01,
        max_duplicates=0.02,
        either=(
            {"nhs_number": 0.80},
            {
                "given_name": 0.98,
                "family_name": 0.98,
                "date_of_birth": 0.98,
                "sex": 0.95,
                "postcode": 0.95,
            },
        ),
    ),
    "Bronze": Threshold(
        completeness={"family_name": 0.90, "date_of_birth": 0.90},
        max_rejected=0.05,
        max_duplicates=0.05,
        either=({"nhs_number": 0.50}, {"postcode": 0.75}),
    ),
}


class RowProblem(BaseModel):
    """A row not used, or a value not valid: where and why, never the value."""

    model_config = ConfigDict(frozen=True)

    line: int
    column: str | None
    reason: str


class BirthDayHeaping(BaseModel):
    """A day of the year on which far more dates of birth fall than on the days around it.

    Attributes:
        month: 1 to 12.
        day: 1 to 31.
        records: valid dates of birth on this day of the year, in any year.
        share: ``records`` ÷ valid dates of birth.
        times_expected: ``records`` ÷ the count expected on this day (the mean of the seven
            days each side, or an even spread over the year if that is more).
    """

    model_config = ConfigDict(frozen=True)

    month: int
    day: int
    records: int
    share: float
    times_expected: float


class FieldQuality(BaseModel):
    """Counts for one canonical field.

    ``partial`` counts dates of birth with only a year, or a year and month (0 for every
    other field): neither valid (no key on the date forms from one, so completeness, and
    the grade, count full dates only) nor invalid (not an error: ``validity`` leaves them
    out, as it leaves out missing values).
    """

    model_config = ConfigDict(frozen=True)

    field: str
    column: str | None
    mapped: bool
    valid: int
    missing: int
    invalid: int
    placeholder: int
    completeness: float
    validity: float
    partial: int = 0


class QualityReport(BaseModel):
    """The quality report of one extract (``model_dump()`` is JSON-able)."""

    model_config = ConfigDict(frozen=True)

    source: str
    format: str
    position: Position = "line"
    rows_read: int
    records_used: int
    rows_rejected: int
    rows_skipped: int
    fields: list[FieldQuality]
    duplicate_nhs_numbers: int
    problems: list[RowProblem]
    problems_not_listed: int
    value_problems: list[RowProblem]
    value_problems_not_listed: int
    grade: Grade
    grade_notes: list[str]
    date_of_birth_heaping: list[BirthDayHeaping] = []
    nhs_numbers_unverified: int = 0
    """NHS numbers not used because their verification status says the trace failed
    (04, 05, 07): counted among the NHS number's missing values as well."""

    def field(self, name: str) -> FieldQuality:
        """The counts of canonical field ``name``."""
        for quality in self.fields:
            if quality.field == name:
                return quality
        raise KeyError(name)


def _duplicates(numbers: array[int]) -> int:
    """How many entries repeat an earlier one (counted with pyarrow, in C)."""
    if not numbers:
        return 0
    import pyarrow as pa
    import pyarrow.compute as pc

    values = pa.Array.from_buffers(pa.uint32(), len(numbers), [None, pa.py_buffer(numbers)])
    distinct: int = pc.count_distinct(values).as_py()
    return len(numbers) - distinct


def _ratio(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def _excess(count: int, expected: float) -> float:
    """The Chernoff exponent: P(X ≥ count) ≤ exp(−excess) at a mean of ``expected``."""
    ratio = count / expected
    return expected * (ratio * math.log(ratio) - ratio + 1.0)


def find_birth_day_heaping(month_days: Mapping[tuple[int, int], int]) -> list[BirthDayHeaping]:
    """Days of the year that hold far more dates of birth than the days around them.

    A day is named when all three hold (docs/quality.md gives the reasons):

    - it holds at least :data:`HEAPING_MIN_RECORDS` dates of birth;
    - it holds at least :data:`HEAPING_MIN_RATIO` times its expected count: the mean count
      of the seven days each side (so a narrow range of births, such as a maternity
      unit's month, is not heaping), or the count an even spread over the year gives, if
      that is more (29 February expects 97/400 of either);
    - the count is significant: the Chernoff bound on the chance of so many at the
      expected rate, ``exp(−e·h(count/e))`` with ``h(x) = x·ln x − x + 1``, is below
      :data:`HEAPING_ALPHA` ÷ 366 (Bonferroni over the days of the year).

    Args:
        month_days: (month, day) → valid dates of birth on that day of the year.

    Returns:
        The heaped days, most records first.
    """
    total = sum(month_days.values())
    if total < HEAPING_MIN_RECORDS:
        return []
    even = total / _DAYS_PER_YEAR
    ring = [month_days.get(md, 0) for md in _YEAR_RING]
    size = len(ring)
    needed = math.log(len(_MONTH_DAYS) / HEAPING_ALPHA)
    found: list[BirthDayHeaping] = []
    for month_day, count in month_days.items():
        if count < HEAPING_MIN_RECORDS or month_day not in _MONTH_DAYS:
            continue
        if month_day == (2, 29):  # between 28 February and 1 March, at a quarter the rate
            before, after, weight = _RING_INDEX[(3, 1)], _RING_INDEX[(3, 1)], _LEAP_DAY_WEIGHT
        else:
            before, after, weight = _RING_INDEX[month_day], _RING_INDEX[month_day] + 1, 1.0
        around = sum(ring[(before - k) % size] for k in range(1, _HEAPING_WINDOW + 1)) + sum(
            ring[(after + k) % size] for k in range(_HEAPING_WINDOW)
        )
        expected = weight * max(around / (2 * _HEAPING_WINDOW), even)
        if count >= HEAPING_MIN_RATIO * expected and _excess(count, expected) >= needed:
            found.append(
                BirthDayHeaping(
                    month=month_day[0],
                    day=month_day[1],
                    records=count,
                    share=round(count / total, 6),
                    times_expected=round(count / expected, 2),
                )
            )
    found.sort(key=lambda heaped: (-heaped.records, heaped.month, heaped.day))
    return found


def assigned_birthdays(dates_of_birth: Iterable[str | None]) -> frozenset[str]:
    """The days of the year an extract's dates of birth are heaped on, as ``MM-DD``.

    Measured from the extract itself (:func:`find_birth_day_heaping` over its valid
    dates): where far more people are born on a day than on the days around it, the
    system wrote that day for birthdays it did not know (1 January for people who know
    only their year of birth, as for many asylum seekers), so a date on it says the year
    and little more. :class:`client_sdk.tokenise.TokeniseParams` takes the result, so
    that the match keys that rest on the day of birth are not formed on such a date
    (:func:`client_sdk.normalise.placeholders.rests_on_day_of_birth`).

    Args:
        dates_of_birth: the extract's dates of birth, ISO ``YYYY-MM-DD`` or ``None``.

    Returns:
        e.g. ``frozenset({"01-01"})``; empty when no day is heaped.
    """
    month_days: dict[tuple[int, int], int] = {}
    for date_of_birth in dates_of_birth:
        if date_of_birth:
            month_day = (int(date_of_birth[5:7]), int(date_of_birth[8:10]))
            month_days[month_day] = month_days.get(month_day, 0) + 1
    return frozenset(f"{h.month:02d}-{h.day:02d}" for h in find_birth_day_heaping(month_days))


def grade_report(
    completeness: dict[str, float], *, rejected: float, duplicates: float, records: int
) -> tuple[Grade, list[str]]:
    """The grade for these measures, and what the next grade up would need.

    Args:
        completeness: field → valid values ÷ records used (0 for unmapped fields).
        rejected: rejected rows ÷ rows read.
        duplicates: duplicate NHS numbers ÷ records with a valid NHS number.
        records: records used.

    Returns:
        The grade and notes naming each unmet requirement of the grade above it.
    """
    if records == 0:
        return "Not rated", ["no usable records"]
    notes: list[str] = []
    for grade, threshold in GRADE_THRESHOLDS.items():
        unmet: list[str] = []
        for name, minimum in threshold.completeness.items():
            if completeness.get(name, 0.0) < minimum:
                found = completeness.get(name, 0.0)
                unmet.append(f"{name} complete {found:.1%} < {minimum:.0%}")
        if rejected > threshold.max_rejected:
            unmet.append(f"rows rejected {rejected:.2%} > {threshold.max_rejected:.1%}")
        if duplicates > threshold.max_duplicates:
            unmet.append(f"duplicate NHS numbers {duplicates:.2%} > {threshold.max_duplicates:.1%}")
        if threshold.either and not any(
            all(completeness.get(n, 0.0) >= m for n, m in option.items())
            for option in threshold.either
        ):
            options = " or ".join(
                " and ".join(f"{n} ≥ {m:.0%}" for n, m in option.items())
                for option in threshold.either
            )
            unmet.append(f"needs {options}")
        if not unmet:
            return grade, notes
        notes = [f"{grade}: {note}" for note in unmet]
    return "Not rated", notes


class QualityCollector:
    """Counts what the pipeline sees; :meth:`report` builds the :class:`QualityReport`.

    Args:
        source: how to name the input in the report (a file name, not a value).
        max_problems: how many problems of each kind to list; the rest are counted.
    """

    def __init__(self, *, source: str = "", max_problems: int = MAX_LISTED_PROBLEMS) -> None:
        self.source = source
        self.format = ""
        self.position: Position = "line"
        self.max_problems = max_problems
        self.columns: dict[str, str | None] = {}
        self.rows_rejected = 0
        self.rows_skipped = 0
        self.unverified = 0
        self.duplicates = 0
        self._combinations: dict[tuple[int, ...], int] = {}
        self._problems: list[RowProblem] = []
        self._value_problems: list[RowProblem] = []
        self._value_problem_count = 0
        self._nhs_numbers = array("I")  # first nine digits: the check digit adds nothing
        self._birth_dates: dict[str, int] = {}

    def begin(self, *, source: str, format: str, columns: dict[str, str | None]) -> None:
        """Name the input and its mapped fields (field → source column; ``None`` if implicit).

        Args:
            source: the input's name.
            format: ``"csv"`` or ``"fhir"``.
            columns: the canonical fields the mapping fills, with their source columns.
        """
        self.source = self.source or source
        self.format = format
        self.position = "line"
        self.columns = dict(columns)

    def set_position(self, position: Position) -> None:
        """Say what the reader's positions count (``"entry"`` for a FHIR Bundle)."""
        self.position = position

    def observe(
        self,
        line: int,
        outcomes: tuple[int, ...],
        nhs_number: str | None,
        date_of_birth: str | None = None,
    ) -> None:
        """Count one used record.

        Args:
            line: where the record starts.
            outcomes: per field of :data:`FIELDS`, 0 for a valid value or a :class:`Defect`.
            nhs_number: the valid NHS number, if any (kept in memory to count duplicates).
            date_of_birth: the valid ISO date of birth, if any (counted by date, to find
                days of the year that hold far more births than chance).
        """
        combinations = self._combinations
        combinations[outcomes] = combinations.get(outcomes, 0) + 1
        if _INVALID in outcomes:
            for name, outcome in zip(FIELDS, outcomes, strict=True):
                if outcome == _INVALID and name in self.columns:
                    self._value_problem(line, name)
        if nhs_number is not None:
            self._nhs_numbers.append(int(nhs_number[:9]))
        if date_of_birth is not None:
            dates = self._birth_dates
            dates[date_of_birth] = dates.get(date_of_birth, 0) + 1

    def absorb(self, other: QualityCollector) -> None:
        """Add what ``other`` observed (records of a later block, counted in a worker).

        Only :meth:`observe` counts are taken: rows are rejected and skipped where the file
        is read. Absorbing blocks in file order gives the report a single pass would.
        """
        combinations = self._combinations
        for outcomes, times in other._combinations.items():
            combinations[outcomes] = combinations.get(outcomes, 0) + times
        room = self.max_problems - len(self._value_problems)
        self._value_problems.extend(other._value_problems[: max(room, 0)])
        self._value_problem_count += other._value_problem_count
        self._nhs_numbers.extend(other._nhs_numbers)
        dates = self._birth_dates
        for date_of_birth, times in other._birth_dates.items():
            dates[date_of_birth] = dates.get(date_of_birth, 0) + times

    def _value_problem(self, line: int, name: str) -> None:
        self._value_problem_count += 1
        if len(self._value_problems) < self.max_problems:
            column = self.columns.get(name)
            self._value_problems.append(
                RowProblem(line=line, column=column, reason=f"invalid {name}")
            )

    def reject(self, line: int, column: str | None, reason: str) -> None:
        """Record a row that was not used (never pass a value in ``reason``)."""
        self.rows_rejected += 1
        if len(self._problems) < self.max_problems:
            self._problems.append(RowProblem(line=line, column=column, reason=reason))

    def skip(self, line: int) -> None:
        """Count an entry that is not a record of this extract (a non-Patient resource)."""
        self.rows_skipped += 1

    def unverified_nhs_number(self, line: int) -> None:
        """Count an NHS number left out for its verification status (never the number)."""
        self.unverified += 1

    def report(self) -> QualityReport:
        """The report of everything observed so far."""
        counts = [[0] * (len(Defect) + 1) for _ in FIELDS]  # valid, then each Defect
        for outcomes, times in self._combinations.items():
            for field_counts, outcome in zip(counts, outcomes, strict=True):
                field_counts[outcome] += times
        records = sum(self._combinations.values())
        with_nhs_number = counts[0][0]
        fields: list[FieldQuality] = []
        completeness: dict[str, float] = {}
        for name, (valid, missing, invalid, placeholder, partial) in zip(
            FIELDS, counts, strict=True
        ):
            mapped = name in self.columns
            if not mapped:
                missing = invalid = placeholder = partial = valid = 0
            completeness[name] = _ratio(valid, records)
            fields.append(
                FieldQuality(
                    field=name,
                    column=self.columns.get(name),
                    mapped=mapped,
                    valid=valid,
                    missing=missing,
                    invalid=invalid,
                    placeholder=placeholder,
                    partial=partial,
                    completeness=round(completeness[name], 6),
                    validity=round(_ratio(valid, valid + invalid), 6),
                )
            )
        rows_read = records + self.rows_rejected
        self.duplicates = _duplicates(self._nhs_numbers)
        grade, notes = grade_report(
            completeness,
            rejected=_ratio(self.rows_rejected, rows_read),
            duplicates=_ratio(self.duplicates, with_nhs_number),
            records=records,
        )
        return QualityReport(
            source=self.source,
            format=self.format,
            position=self.position,
            rows_read=rows_read,
            records_used=records,
            rows_rejected=self.rows_rejected,
            rows_skipped=self.rows_skipped,
            fields=fields,
            duplicate_nhs_numbers=self.duplicates,
            problems=list(self._problems),
            problems_not_listed=self.rows_rejected - len(self._problems),
            value_problems=list(self._value_problems),
            value_problems_not_listed=self._value_problem_count - len(self._value_problems),
            grade=grade,
            grade_notes=notes,
            date_of_birth_heaping=find_birth_day_heaping(self._month_days()),
            nhs_numbers_unverified=self.unverified,
        )

    def _month_days(self) -> dict[tuple[int, int], int]:
        month_days: dict[tuple[int, int], int] = {}
        for date_of_birth, times in self._birth_dates.items():
            month_day = (int(date_of_birth[5:7]), int(date_of_birth[8:10]))
            month_days[month_day] = month_days.get(month_day, 0) + times
        return month_days
