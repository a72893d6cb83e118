"""Opt-outs at the source: which records may not be used for research (docs/agreements.md).

The National Data Opt-out works by a check, not a list: the organisation sends the NHS
numbers it means to use to NHS England's "Check for National Data Opt-outs" service (over
MESH) and gets back the numbers it *may* use — the *permitted* file. Type 1 opt-outs
(a patient asking their GP practice not to share their data beyond their direct care) are
coded entries in the GP record (SNOMED CT ``827241000000103``, "Dissent from secondary use
of general practitioner patient identifiable data"), which a mapping names as a column.

From both the SDK sets one flag per record, *research-restricted*
(:data:`keys.chunk.RESEARCH_RESTRICTED`), and the batch header carries the day of the
check. The batch says nothing else: no reason, no count, no list of who opted out, and the
permitted file itself never leaves this machine (nor is it copied anywhere: it is read
into memory for the run).

A record is restricted when a permitted file is applied and the record's NHS number —
valid, and not one whose verification status says the trace failed — is not in it (a
record the check could not clear is not used), or when its Type 1 column holds one of the
mapping's Type 1 codes.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from client_sdk.errors import InputError
from client_sdk.mapping import Mapping
from client_sdk.normalise.nhs_number import check_nhs_number
from client_sdk.record import NormalisedRecord

__all__ = [
    "PermittedList",
    "SourceOptOuts",
    "load_permitted",
    "split_codes",
]

_CODE_SEPARATORS = re.compile(r"[\s,;|]+")
_DATE_FORMATS = ("%Y-%m-%d", "%d/%m/%Y", "%Y%m%d", "%d-%m-%Y")


def split_codes(cell: str) -> list[str]:
    """The codes of a cell that may hold several (separated by spaces, commas, ``;`` or ``|``),
    each without a Read code's trailing dots."""
    return [code.rstrip(".") for code in _CODE_SEPARATORS.split(cell.strip()) if code]


@dataclass(frozen=True, slots=True)
class PermittedList:
    """The NHS numbers the national check says may be used, and the day it was made.

    Attributes:
        numbers: the permitted NHS numbers (10 digits each).
        checked: the day of the check.
    """

    numbers: frozenset[str]
    checked: date

    def __repr__(self) -> str:  # never the numbers, even in a traceback
        return f"PermittedList({len(self.numbers)} numbers, checked {self.checked})"


def _parse_day(text: str) -> date | None:
    for fmt in _DATE_FORMATS:
        try:
            return datetime.strptime(text.strip(), fmt).date()
        except ValueError:
            continue
    return None


def _header_columns(cells: list[str]) -> tuple[int, int] | None:
    """The NHS number and check date columns of a header row (``None``: not a header).

    A first line whose first cell is digits is a number, not a header; a header names its
    NHS number column (``NHS_NUMBER``, ``NHS Number``…) or the NHS number is its first.
    """
    if re.fullmatch(r"[\d ]+", cells[0]):
        return None
    names = [re.sub(r"[^a-z]", "", c.lower()) for c in cells]
    nhs = next((i for i, n in enumerate(names) if n.startswith("nhs")), 0)
    day = next((i for i, n in enumerate(names) if "date" in n and i != nhs), -1)
    return nhs, day


def load_permitted(
    path: Path, *, checked: date | None = None, today: date | None = None
) -> PermittedList:
    """Read a permitted file as the Check for National Data Opt-outs service returns it.

    Either one NHS number a line (the ``.dat`` file, a trailing comma allowed), or a CSV
    with a header row naming an NHS number column (``NHS_NUMBER``, ``NHS Number``…) and,
    optionally, a check date column (any header with ``date`` in it). The day of the check
    is ``checked`` when given, else the earliest date in the file's date column.

    Raises:
        InputError: unreadable file, a line that is not a valid NHS number (by line, never
            the value), no numbers, no check date, or a check date in the future.
    """
    today = today or date.today()
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise InputError(f"{path}: cannot read the permitted file ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: the permitted file is not UTF-8 text") from None
    numbers: set[str] = set()
    columns: tuple[int, int] | None = None
    days: list[date] = []
    first = True
    for line, cells in enumerate(csv.reader(text.splitlines()), start=1):
        cells = [c.strip() for c in cells]
        if not any(cells):
            continue
        if first:
            first = False
            columns = _header_columns(cells)
            if columns is not None:
                continue
        nhs, day = columns if columns is not None else (0, -1)
        value = cells[nhs].replace(" ", "") if nhs < len(cells) else ""
        number = check_nhs_number(value)
        if not isinstance(number, str):
            raise InputError(f"{path}, line {line}: not a valid NHS number; nothing applied")
        numbers.add(number)
        if day >= 0 and day < len(cells) and cells[day]:
            parsed = _parse_day(cells[day])
            if parsed is None:
                raise InputError(f"{path}, line {line}: the check date is not a date")
            days.append(parsed)
    if not numbers:
        raise InputError(f"{path}: the permitted file holds no NHS numbers")
    day_checked = checked or (min(days) if days else None)
    if day_checked is None:
        raise InputError(
            f"{path}: the permitted file gives no check date; give it with --opt-out-checked"
        )
    if day_checked > today:
        raise InputError(f"{path}: the opt-out check date {day_checked} is in the future")
    return PermittedList(frozenset(numbers), day_checked)


@dataclass(frozen=True, slots=True)
class SourceOptOuts:
    """What sets a record's research-restricted flag: a permitted file, Type 1 codes, or both.

    Picklable: tokenising workers each receive one.

    Attributes:
        permitted: the permitted file, if one is applied.
        type1_codes: the codes that mean a Type 1 opt-out (empty: no Type 1 column).
    """

    permitted: PermittedList | None
    type1_codes: frozenset[str]

    @classmethod
    def of(cls, mapping: Mapping, permitted: PermittedList | None) -> SourceOptOuts | None:
        """The opt-outs a mapping and a permitted file ask for (``None``: none at all)."""
        codes: frozenset[str] = frozenset()
        section = mapping.opt_out
        if section is not None and section.type1_column is not None:
            codes = frozenset(code.rstrip(".") for code in section.type1_codes)
        if permitted is None and not codes:
            return None
        return cls(permitted, codes)

    @property
    def checked(self) -> date | None:
        """The day of the national check, if a permitted file is applied."""
        return self.permitted.checked if self.permitted is not None else None

    def is_restricted(self, nhs_number: str | None, type1_cell: str | None) -> bool:
        """Whether a record with this (normalised) NHS number and Type 1 cell is restricted."""
        permitted = self.permitted
        if permitted is not None and (nhs_number is None or nhs_number not in permitted.numbers):
            return True
        if type1_cell and self.type1_codes:
            return not self.type1_codes.isdisjoint(split_codes(type1_cell))
        return False

    def mark(self, record: NormalisedRecord, type1_cell: str | None) -> NormalisedRecord:
        """``record``, research-restricted if it should be."""
        if self.is_restricted(record.nhs_number, type1_cell):
            return record._replace(restricted=True)
        return record
