"""Dates of birth: the mapping's formats, ISO output, impossible and implausible dates rejected.

Each ``strptime``-style format is compiled once into a regular expression (``strptime``
itself costs several microseconds a call; this is the hot path). Formats are tried in the
mapping's order and the first that gives a real calendar date wins. A format without a time
may be followed by a midnight time (``1980-02-29 00:00:00``, ``1980-02-29T00:00:00Z``), which
database exports and spreadsheets add (``1/2/1980 0:00``, ``2/1/1980 12:00:00 AM``, an Oracle
``01-FEB-80 12.00.00.000000 AM``). Supported directives: ``%d %m %Y %y %b %B %H %I %M %S %f
%p %z %%``; a format with a time accepts any time of day. Numeric fields with nothing between
them (``%Y%m%d``) must be written at their full width: ``1980111`` could be 1 November or
11 January, and ``strptime`` would pick one.

Rejected: impossible dates (31 April, 29 February 1981) and unparseable text as INVALID;
dates after ``today`` and before 1 January of ``today.year - MAX_AGE_YEARS`` as INVALID;
the listed default dates (1900-01-01, …) and dates written as only zeros (``00000000``,
``00/00/0000``) as PLACEHOLDER. ``%b`` and ``%B`` each take an English month abbreviation
or full name in any case (``JAN``, ``jan``, ``Jan.``, ``Sept``, ``January``). Two-digit years
(``%y``) pivot on ``today``: a date is put in the latest century that keeps it at or before
``today`` (on 24 November 2026, ``24/11/26`` is 2026-11-24, ``25/11/26`` is 1926-11-25 and
``01/01/27`` is 1927-01-01), so a date of birth is never in the future; a person over 100
written with two digits cannot be told from a child, which is why a four-digit format should
come first in the mapping when the extract has one.

A *partial* date, with only its year or its year and month, is neither a date nor invalid:
:meth:`DateParser.check` says PARTIAL and :meth:`DateParser.partial` gives ``YYYY`` or
``YYYY-MM`` (ISO 8601's reduced precision, as FHIR's ``date`` writes it). Read as partial:
a date in one of the mapping's formats whose day is zero, and whose month is zero or a
month (``00/00/1980``, ``0/3/1980``, ``1980-00-00``, ``19800300``); a value of four digits
alone (``1980``: no format with a day, a month and a year is that short, so none is
ambiguous with it); with ``iso_year_month`` (FHIR, whose ``date`` type has the form) ``1980-03``;
and three cells whose day is zero or empty and whose month is zero, empty or a month. Its
year must be in the accepted range and the partial not after ``today``'s month; one on
the year (and month) of a listed default date (``00/00/1901``) is a PLACEHOLDER. A day
without a month (``05/00/1980``), an out-of-range year and a date of only zeros are not
partial: INVALID, INVALID and PLACEHOLDER, as before.

:meth:`DateParser.raw_digits` gives the ``YYYYMMDD`` digits of a date that does not exist
(31 April, month 54) for the opt-in ``date_of_birth_raw`` field, when the rest of it is
plausible.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

from client_sdk.normalise.defect import Defect
from client_sdk.normalise.placeholders import (
    PLACEHOLDER_DATES,
    is_placeholder_date_text,
    is_placeholder_generic,
)

__all__ = [
    "MAX_AGE_YEARS",
    "DateFormatError",
    "DateParser",
    "compile_date_format",
]

MAX_AGE_YEARS = 125

_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_MONTH_NAMES = (
    "JANUARY",
    "FEBRUARY",
    "MARCH",
    "APRIL",
    "MAY",
    "JUNE",
    "JULY",
    "AUGUST",
    "SEPTEMBER",
    "OCTOBER",
    "NOVEMBER",
    "DECEMBER",
)
_MONTH_NUMBER = (
    {name: i + 1 for i, name in enumerate(_MONTHS)}
    | {name: i + 1 for i, name in enumerate(_MONTH_NAMES)}
    | {"SEPT": 9}
)
_DAYS_IN_MONTH = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_DIRECTIVES = {
    "d": r"(?P<d>\d{1,2})",
    "m": r"(?P<m>\d{1,2})",
    "Y": r"(?P<Y>\d{4})",
    "y": r"(?P<y>\d{2})",
    # Either directive takes an English month abbreviation or full name, in any case and
    # with or without a full stop (JAN, jan, Jan., Sept, January): exports mix them.
    "b": r"(?P<b>[A-Za-z]{3,9}\.?)",
    "B": r"(?P<b>[A-Za-z]{3,9}\.?)",
    "H": r"\d{1,2}",
    "M": r"\d{1,2}",
    "S": r"\d{1,2}",
    "f": r"\d{1,9}",
    "z": r"(?:Z|[+-]\d{2}:?\d{2})",
    "I": r"\d{1,2}",
    "p": r"[AP]\.?M\.?",
    "%": "%",
}
# Numeric directives and their pattern when written at their full width.
_FIXED_WIDTH = {
    "d": r"(?P<d>\d{2})",
    "m": r"(?P<m>\d{2})",
    "Y": r"(?P<Y>\d{4})",
    "y": r"(?P<y>\d{2})",
    "H": r"\d{2}",
    "M": r"\d{2}",
    "S": r"\d{2}",
    "I": r"\d{2}",
}
# Midnight as exports write it after a date: SQL Server "00:00:00.000", ISO "T00:00:00Z" or
# with any UTC offset (the date written is the local date), a spreadsheet's "0:00", .NET's
# "12:00:00 AM", Oracle's "12.00.00.000000 AM".
_MIDNIGHT = (
    r"(?:(?:T|\s+)(?:0?0[:.]00(?:[:.]00(?:[.,]0+)?)?|12[:.]00(?:[:.]00(?:[.,]0+)?)?\s*A\.?M\.?)"
    r"(?:\s*(?:Z|UTC|GMT|[+-]\d{2}(?::?\d{2})?))?)?"
)


_YEAR_ALONE = re.compile(r"\d{4}")
_ISO_YEAR_MONTH = re.compile(r"(\d{4})-(\d{2})")


class DateFormatError(ValueError):
    """A date format the fast parser cannot compile (the mapping check reports it)."""


def compile_date_format(fmt: str) -> re.Pattern[str]:
    """Compile a ``strptime``-style format into a full-match regular expression.

    Args:
        fmt: e.g. ``"%d/%m/%Y"``; it must contain a day, a month and a year.

    Returns:
        A pattern with named groups ``d``, ``m``, ``Y`` or ``y``, and ``b`` for month names.

    Raises:
        DateFormatError: an unsupported directive, a repeated field, or a missing day,
            month or year.
    """
    parts: list[str] = []
    numeric: dict[int, str] = {}  # index in parts → directive, for numeric fields
    seen: set[str] = set()
    has_time = False
    i = 0
    while i < len(fmt):
        char = fmt[i]
        if char == "%":
            if i + 1 >= len(fmt) or fmt[i + 1] not in _DIRECTIVES:
                raise DateFormatError(f"unsupported directive {fmt[i : i + 2]!r}")
            directive = fmt[i + 1]
            group = {"B": "b", "y": "Y"}.get(directive, directive)
            if group in "dmYb":
                if group in seen:
                    raise DateFormatError(f"%{directive} given twice")
                seen.add(group)
            has_time = has_time or directive in "HIMSfpz"
            if directive in _FIXED_WIDTH:
                numeric[len(parts)] = directive
            parts.append(_DIRECTIVES[directive])
            i += 2
        elif char.isspace():
            parts.append(r"\s+")
            while i < len(fmt) and fmt[i].isspace():
                i += 1
        else:
            parts.append(re.escape(char))
            i += 1
    # Numeric fields with nothing between them (%Y%m%d, %d%m%y) are read at their fixed
    # width: "1980111" could be 1 November or 11 January, so it matches no such format.
    for index, directive in numeric.items():
        if index + 1 in numeric or index - 1 in numeric:
            parts[index] = _FIXED_WIDTH[directive]
    if "d" not in seen or "Y" not in seen or not seen & {"m", "b"}:
        raise DateFormatError("a date format needs a day, a month and a year")
    if "m" in seen and "b" in seen:
        raise DateFormatError("a month given twice")
    if not has_time:
        parts.append(_MIDNIGHT)
    return re.compile("".join(parts), re.IGNORECASE)


@dataclass(slots=True)
class DateParser:
    """Parse dates in a mapping's formats into ISO ``YYYY-MM-DD``.

    Attributes:
        formats: ``strptime``-style formats, tried in order.
        today: the latest acceptable date (a parameter, so runs are reproducible).
        iso_year_month: read ``YYYY-MM`` as a partial date (FHIR's ``date`` type has the
            form; a CSV mapping's formats say where its month is, and none is this).
    """

    formats: Sequence[str]
    today: date = field(default_factory=date.today)
    iso_year_month: bool = field(default=False, kw_only=True)
    _patterns: list[tuple[re.Pattern[str], bool]] = field(init=False, repr=False)
    _earliest: str = field(init=False, repr=False)
    _latest: str = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._patterns = [(compile_date_format(f), "%y" in f) for f in self.formats]
        self._earliest = f"{self.today.year - MAX_AGE_YEARS:04d}-01-01"
        self._latest = self.today.isoformat()

    def check(self, raw: str) -> str | Defect:
        """Normalise one date, or say why it cannot be used.

        Args:
            raw: the date as written in the source.

        Returns:
            ``YYYY-MM-DD``, or :class:`Defect` MISSING, INVALID, PLACEHOLDER or PARTIAL
            (a year, or a year and month, alone: :meth:`partial` gives it).
        """
        text = raw.strip()
        if not text:
            return Defect.MISSING
        for pattern, two_digit in self._patterns:
            match = pattern.fullmatch(text)
            if match is None:
                continue
            iso = self._iso(match, two_digit=two_digit)
            if iso is None:
                continue
            if iso in PLACEHOLDER_DATES:
                return Defect.PLACEHOLDER
            if iso > self._latest or iso < self._earliest:
                return Defect.INVALID
            return iso
        partial = self._partial(text)
        if partial is not None:
            return Defect.PARTIAL if isinstance(partial, str) else partial
        if is_placeholder_generic(" ".join(re.sub(r"[^A-Z0-9]+", " ", text.upper()).split())):
            return Defect.PLACEHOLDER
        if is_placeholder_date_text(text):
            return Defect.PLACEHOLDER
        return Defect.INVALID

    def partial(self, raw: str) -> str | None:
        """The year (``YYYY``) or year and month (``YYYY-MM``) of a date :meth:`check`
        finds PARTIAL, else ``None``.

        Args:
            raw: the date as written in the source.
        """
        found = self._partial(raw.strip())
        return found if isinstance(found, str) else None

    def partial_parts(self, day: str, month: str, year: str) -> str | None:
        """:meth:`partial` of a date written in three cells."""
        cells = (day.strip(), month.strip(), year.strip())
        found = self._partial_cells(cells, [_part_number(cell) for cell in cells])
        return found if isinstance(found, str) else None

    def _partial(self, text: str) -> str | Defect | None:
        """``YYYY`` or ``YYYY-MM`` of a partial date written whole, PLACEHOLDER for one on
        a default date's year (and month), ``None`` for anything else."""
        if _YEAR_ALONE.fullmatch(text):
            return self._judged_partial(int(text), 0)
        if self.iso_year_month and (iso := _ISO_YEAR_MONTH.fullmatch(text)):
            month = int(iso[2])
            return self._judged_partial(int(iso[1]), month) if month else None
        for pattern, two_digit in self._patterns:
            match = pattern.fullmatch(text)
            if match is None:
                continue
            groups = match.groupdict()
            if int(groups["d"]) != 0:
                continue  # a day is known: a real date, or a broken one
            if "b" in groups:
                month = _MONTH_NUMBER.get(groups["b"].upper().rstrip("."), -1)
            else:
                month = int(groups["m"])
            if two_digit:  # the pivot, as for a whole date: never after today's month
                year = self.today.year // 100 * 100 + int(groups["y"])
                if (year, month) > (self.today.year, self.today.month):
                    year -= 100
            else:
                year = int(groups["Y"])
            found = self._judged_partial(year, month)
            if found is not None:
                return found
        return None

    def _partial_cells(
        self, cells: tuple[str, str, str], numbers: list[int | None]
    ) -> str | Defect | None:
        """:meth:`_partial` of three cells: a day zero or empty, a month zero, empty, a
        number or a name, a four-digit year."""
        day, month, year = numbers
        if cells[0] and day != 0:
            return None
        if not cells[1]:
            month = 0
        elif month is None:
            month = _MONTH_NUMBER.get(cells[1].upper().rstrip("."))
        if month is None or year is None or len(_whole(cells[2])) != 4:
            return None
        return self._judged_partial(year, month)

    def _judged_partial(self, year: int, month: int) -> str | Defect | None:
        """A year and a month (0: not known) as ``YYYY`` or ``YYYY-MM`` if in range."""
        if not 0 <= month <= 12:
            return None
        partial = f"{year:04d}" if month == 0 else f"{year:04d}-{month:02d}"
        if partial[:4] < self._earliest[:4] or partial > self._latest[: len(partial)]:
            return None  # out of range: INVALID (or a PLACEHOLDER of zeros), as a date is
        if any(listed.startswith(partial) for listed in PLACEHOLDER_DATES):
            return Defect.PLACEHOLDER
        return partial

    def raw_digits(self, raw: str) -> str | None:
        """The digits of a date that fails validation, as ``YYYYMMDD``, when it is plausible.

        For the opt-in ``date_of_birth_raw`` field (docs/normalisation.md): two records
        that carry the same impossible date (``1987-02-31``, a FEBRL-style ``19450493``)
        can still share a weak key. Only a date :meth:`check` finds INVALID qualifies (never
        a placeholder), written in one of the mapping's formats with a numeric month and a
        four-digit year, that is not a calendar date (a real date refused as future or too
        old does not qualify), whose year is in the accepted range and whose day and month
        are not ``00`` (a zero day or month means "not known", not a typing slip).

        Args:
            raw: the date as written in the source.

        Returns:
            e.g. ``"19870231"``, or ``None`` (a valid, missing, placeholder or implausible
            value).
        """
        if self.check(raw) is not Defect.INVALID:
            return None
        text = raw.strip()
        for pattern, two_digit in self._patterns:
            match = pattern.fullmatch(text)
            if match is None or two_digit or "b" in match.groupdict():
                continue
            return self._plausible_digits(match["Y"], match["m"], match["d"])
        return None

    def raw_parts_digits(self, day: str, month: str, year: str) -> str | None:
        """:meth:`raw_digits` of a date written in three cells (numeric cells only)."""
        if self.check_parts(day, month, year) is not Defect.INVALID:
            return None
        cells = [_whole(cell.strip()) for cell in (year, month, day)]
        if not all(cells) or len(cells[0]) != 4 or len(cells[1]) > 2 or len(cells[2]) > 2:
            return None
        return self._plausible_digits(*cells)

    def _plausible_digits(self, year: str, month: str, day: str) -> str | None:
        y, m, d = int(year), int(month), int(day)
        if m == 0 or d == 0 or _iso_date(y, m, d) is not None:
            return None  # "not known" parts, or a real date refused for its range
        if not int(self._earliest[:4]) <= y <= self.today.year:
            return None
        return f"{year}{m:02d}{d:02d}"

    def __call__(self, raw: str) -> str | None:
        """``YYYY-MM-DD``, or ``None`` when missing, invalid or a placeholder."""
        result = self.check(raw)
        return result if isinstance(result, str) else None

    def check_parts(self, day: str, month: str, year: str) -> str | Defect:
        """Normalise a date written in three cells (day, month, year), or say why not.

        The day is a number; the month a number or an English name or abbreviation
        (``2``, ``02``, ``Feb``, ``February``, ``Sept.``); the year four digits. A whole
        number written as a spreadsheet float (``1.0``, ``1980.0``) is read as that number.
        The result is judged as :meth:`check` judges a whole date: impossible, future and
        too-old dates are INVALID, the listed default dates a PLACEHOLDER.

        Args:
            day: the day cell.
            month: the month cell.
            year: the year cell.

        Returns:
            ``YYYY-MM-DD``, or :class:`Defect` MISSING (every cell empty), PARTIAL (a day
            zero or empty, with a year and perhaps a month: :meth:`partial_parts` gives
            it), PLACEHOLDER (a default date, or a cell such as ``UNKNOWN``) or INVALID
            (anything else, a day without a month or year among them).
        """
        cells = (day.strip(), month.strip(), year.strip())
        if not any(cells):
            return Defect.MISSING
        numbers = [_part_number(cell) for cell in cells]
        if numbers[1] is None:
            numbers[1] = _MONTH_NUMBER.get(cells[1].upper().rstrip("."))
        d, m, y = numbers
        iso = None
        if d is not None and m is not None and y is not None and len(_whole(cells[2])) == 4:
            iso = _iso_date(y, m, d)
        if iso is None:
            partial = self._partial_cells(cells, numbers)
            if partial is not None:
                return Defect.PARTIAL if isinstance(partial, str) else partial
            for cell in cells:
                words = " ".join(re.sub(r"[^A-Z0-9]+", " ", cell.upper()).split())
                if words and is_placeholder_generic(words):
                    return Defect.PLACEHOLDER
            if is_placeholder_date_text("".join(cells)):
                return Defect.PLACEHOLDER
            return Defect.INVALID
        if iso in PLACEHOLDER_DATES:
            return Defect.PLACEHOLDER
        if iso > self._latest or iso < self._earliest:
            return Defect.INVALID
        return iso

    def _iso(self, match: re.Match[str], *, two_digit: bool) -> str | None:
        groups = match.groupdict()
        day = int(groups["d"])
        if "b" in groups:
            month = _MONTH_NUMBER.get(groups["b"].upper().rstrip("."), 0)
        else:
            month = int(groups["m"])
        if not two_digit:
            return _iso_date(int(groups["Y"]), month, day)
        # The pivot: the latest such date at or before today, so a date of birth written
        # with two digits is never in the future (on 24/11/2026, 24/11/26 is 2026 and
        # 25/11/26 is 1926).
        year = self.today.year // 100 * 100 + int(groups["y"])
        iso = _iso_date(year, month, day)
        if iso is not None and iso <= self._latest:
            return iso
        return _iso_date(year - 100, month, day)


_SPREADSHEET_WHOLE = re.compile(r"(\d{1,4})(?:\.0+)?")


def _whole(cell: str) -> str:
    """The digits of a whole-number cell (``"1980.0"`` → ``"1980"``), or ``""``."""
    match = _SPREADSHEET_WHOLE.fullmatch(cell)
    return match[1] if match is not None else ""


def _part_number(cell: str) -> int | None:
    digits = _whole(cell)
    return int(digits) if digits else None


def _iso_date(year: int, month: int, day: int) -> str | None:
    """``YYYY-MM-DD`` for a real calendar date, else ``None``."""
    if not 1 <= month <= 12 or day < 1:
        return None
    leap = month == 2 and year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    if day > _DAYS_IN_MONTH[month - 1] + leap:
        return None
    return f"{year:04d}-{month:02d}-{day:02d}"
