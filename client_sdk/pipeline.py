"""From an extract on disk to :class:`NormalisedRecord`s: read, normalise, validate, count.

:func:`iter_records` streams the file (one row in memory at a time) and yields one record
per usable row, with ``None`` for every missing, invalid or placeholder value. Rows that
cannot be used at all (no local id, a malformed row) are not yielded; they go to the
:class:`QualityCollector` as problems with their line number and reason. So does every row
after the first with the same local id (merged extracts repeat ids): it would get the same
reference as the first and replace it at the broker, losing a patient. The problem names
the line of the first. Normalisers are pure, and values repeat (names, dates, postcodes),
so each field's results are memoised in a bounded cache for the run.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import ExitStack, closing
from datetime import date
from operator import itemgetter
from pathlib import Path
from typing import TypeVar

from mypy_extensions import mypyc_attr

from client_sdk.mapping import Mapping, SystemRef
from client_sdk.normalise.dates import DateParser
from client_sdk.normalise.defect import Defect
from client_sdk.normalise.names import (
    FullNameLayout,
    check_family_name,
    check_given_names,
    check_middle_names,
    nickname_key,
    split_full_name,
)
from client_sdk.normalise.nhs_number import check_nhs_number
from client_sdk.normalise.placeholders import (
    PLACEHOLDER_NAME_PAIR_FAMILIES,
    is_placeholder_name_pair,
    payload_value,
)
from client_sdk.normalise.places import check_locality, check_region
from client_sdk.normalise.postcode import check_postcode
from client_sdk.normalise.sex import check_sex
from client_sdk.normalise.text import check_address_line, check_address_lines, check_other_id
from client_sdk.opt_out import SourceOptOuts
from client_sdk.quality import QualityCollector
from client_sdk.readers.columns import (
    SEPARATOR,
    find_postcode_in_cells,
    joined_text,
    name_text,
)
from client_sdk.readers.csv import read_csv, without_unverified
from client_sdk.readers.fhir import FhirFields, read_fhir
from client_sdk.record import NormalisedRecord
from client_sdk.tokenise import CHUNK_RECORDS, RecordBlocks

__all__ = ["CACHE_LIMIT", "iter_records", "record_blocks"]

CACHE_LIMIT = 1 << 17
"""Entries per field cache; a full cache is emptied and refilled (memory stays bounded)."""

# Slot order shared by both readers' value lists: the id, ten fields, the payload's start
# and end, then the fields added since (the FHIR reader's values stop at the payload).
_ID, _NHS, _GIVEN, _MIDDLE, _FAMILY, _FULL, _DOB, _SEX, _POSTCODE, _ADDRESS, _OTHER = range(11)
_PAYLOAD_START, _PAYLOAD_END, _LOCALITY, _REGION = range(11, 15)
_SLOT_FIELDS = (
    (_NHS, "nhs_number"),
    (_GIVEN, "given_name"),
    (_MIDDLE, "middle_names"),
    (_FAMILY, "family_name"),
    (_FULL, "full_name"),
    (_DOB, "date_of_birth"),
    (_SEX, "sex"),
    (_POSTCODE, "postcode"),
    (_ADDRESS, "address_line"),
    (_OTHER, "other_id"),
    (_LOCALITY, "locality"),
    (_REGION, "region"),
)

_T = TypeVar("_T")


def _filler(function: Callable[[str], _T], cache: dict[str, _T]) -> Callable[[str], _T]:
    """Compute a value missing from ``cache`` and remember it (the cache stays bounded)."""

    def fill(raw: str) -> _T:
        result = function(raw)
        if len(cache) >= CACHE_LIMIT:
            cache.clear()
        cache[raw] = result
        return result

    return fill


_PayloadCache = tuple[dict[str, str | None], Callable[[str], str | None]]


def _payload_cache() -> _PayloadCache:
    """A payload cell → the value that leaves (:func:`payload_value`): a cache and its filler.

    Used inline as ``cache[raw] if raw in cache else fill(raw)``: a call per cell would
    cost more than the cache saves.
    """
    cache: dict[str, str | None] = {}
    return cache, _filler(payload_value, cache)


_Value = tuple[str | None, int]
"""A normalised value or ``None``, and its outcome (0 or a :class:`Defect`)."""
_Date = tuple[str | None, int, str | None]
"""A normalised date or ``None``, its outcome, and the digits of a date that does not exist."""
_Given = tuple[str | None, str | None, str | None, int]
"""Given name, middle names, nickname key, outcome."""
_Names = tuple[str | None, str | None, str | None, int, str | None, int]
"""Given name, middle names, nickname key, its outcome, family name, its outcome."""


def _value(check: Callable[[str], str | Defect]) -> Callable[[str], _Value]:
    def value(raw: str) -> _Value:
        result = check(raw)
        return (result, 0) if isinstance(result, str) else (None, result)

    return value


def _given(result: tuple[str, str | None] | Defect) -> _Given:
    if isinstance(result, Defect):
        return None, None, None, result
    return result[0], result[1], nickname_key(result[0]), 0


def _given_names(raw: str) -> _Given:
    return _given(check_given_names(raw))


_RowFunction = Callable[
    [int, Sequence[str], str, tuple[str | None, ...]], tuple[NormalisedRecord, tuple[int, ...]]
]


def _checks(mapping: Mapping, dates: DateParser) -> dict[str, Callable[[str], str | Defect]]:
    """Each one-value field's normaliser, reading a field of several columns if so mapped.

    A field of several columns arrives as its cells joined with :data:`SEPARATOR`
    (:func:`_joining`), so its normaliser is memoised like any other.
    """
    country = mapping.source.country

    def postcode(raw: str) -> str | Defect:
        return check_postcode(raw, country=country)

    checks: dict[str, Callable[[str], str | Defect]] = {
        "middle_names": check_middle_names,
        "family_name": check_family_name,
        "postcode": postcode,
        "address_line": check_address_line,
        "locality": check_locality,
        "region": check_region,
    }
    if mapping.source.format != "csv":
        return checks
    texts: dict[str, Callable[[str], str]] = {
        "middle_names": name_text,
        "family_name": name_text,
        "postcode": joined_text,
    }
    for name, text in texts.items():
        if mapping.joins_columns(name):
            checks[name] = _after(text, checks[name])
    if mapping.joins_columns("address_line"):

        def address_lines(raw: str) -> str | Defect:
            return check_address_lines(raw.split(SEPARATOR))

        checks["address_line"] = address_lines
    if mapping.finds_postcode:

        def found_postcode(raw: str) -> str | Defect:
            found = find_postcode_in_cells(raw)
            if found:
                return postcode(found)
            placeholder = check_address_line(joined_text(raw)) is Defect.PLACEHOLDER
            return Defect.PLACEHOLDER if placeholder else Defect.MISSING

        checks["postcode"] = found_postcode
    return checks


def _date_check(mapping: Mapping, dates: DateParser) -> Callable[[str], _Date]:
    """The date of birth's value and outcome, with the digits of a date that does not exist.

    The digits (``date_of_birth_raw``) are worked out only for an invalid date, so a
    valid extract pays nothing for them.
    """
    if mapping.source.format == "csv" and mapping.joins_columns("date_of_birth"):

        def date_parts(raw: str) -> _Date:
            parts = raw.split(SEPARATOR)
            if len(parts) != 3:
                return None, Defect.INVALID, None
            result = dates.check_parts(*parts)
            if isinstance(result, str):
                return result, 0, None
            raw_digits = dates.raw_parts_digits(*parts) if result is Defect.INVALID else None
            return None, result, raw_digits

        return date_parts

    def one_cell(raw: str) -> _Date:
        result = dates.check(raw)
        if isinstance(result, str):
            return result, 0, None
        return None, result, dates.raw_digits(raw) if result is Defect.INVALID else None

    return one_cell


def _after(text: Callable[[str], str], check: Callable[[str], _T]) -> Callable[[str], _T]:
    """``check`` of the text that ``text`` makes of a field's joined cells."""

    def joined(raw: str) -> _T:
        return check(text(raw))

    return joined


def _joining(row: _RowFunction, joins: Sequence[tuple[int, ...]]) -> _RowFunction:
    """``row`` reading fields of several columns: each one's cells joined, after the values.

    Only mappings with such a field pay for it; the one-column row function is unchanged.
    """
    pickers = [itemgetter(*indexes) for indexes in joins]
    join = SEPARATOR.join

    def joined_row(
        line: int, values: Sequence[str], local_id: str, payload: tuple[str | None, ...]
    ) -> tuple[NormalisedRecord, tuple[int, ...]]:
        return row(line, (*values, *[join(pick(values)) for pick in pickers]), local_id, payload)

    return joined_row


def _row_function(
    mapping: Mapping,
    positions: list[int],
    *,
    today: date,
    joins: Sequence[tuple[int, ...]] = (),
) -> _RowFunction:
    """The hot path: one row of slot values → its record and per-field outcomes.

    Every normaliser is pure, so each field gets a bounded cache from raw text to
    (value, outcome); a cache hit costs one dictionary lookup. Outcomes are 0 (valid) or a
    :class:`Defect`, in the order of :data:`client_sdk.quality.FIELDS`. ``joins`` lists,
    for each field read from several columns, the positions of its cells (see
    :func:`_csv_plan`).
    """
    row = _one_value_row_function(mapping, positions, today=today)
    return _joining(row, joins) if joins else row


def _one_value_row_function(mapping: Mapping, positions: list[int], *, today: date) -> _RowFunction:
    """:func:`_row_function` for rows that hold one value per field."""
    full_name = mapping.identifiers.full_name
    layout: FullNameLayout | None = full_name.layout if full_name is not None else None
    if mapping.source.format == "fhir":
        layout = "GIVEN FAMILY"
    dates = DateParser(mapping.date_formats, today=today)
    checks = _checks(mapping, dates)
    given_names: Callable[[str], _Given] = _given_names
    if mapping.source.format == "csv" and mapping.joins_columns("given_name"):
        given_names = _after(name_text, _given_names)

    def names(raw: str) -> _Names:
        assert layout is not None
        given, family = split_full_name(raw, layout)
        if isinstance(family, Defect):
            return (*_given(given), None, family)
        return (*_given(given), family, 0)

    def cached(
        function: Callable[[str], _T],
    ) -> tuple[Callable[[str], _T | None], Callable[[str], _T]]:
        cache: dict[str, _T] = {}
        return cache.get, _filler(function, cache)

    full_get, full_fill = cached(names)
    given_get, given_fill = cached(given_names)
    middle_get, middle_fill = cached(_value(checks["middle_names"]))
    family_get, family_fill = cached(_value(checks["family_name"]))
    dob_get, dob_fill = cached(_date_check(mapping, dates))
    sex_get, sex_fill = cached(_value(check_sex))
    postcode_get, postcode_fill = cached(_value(checks["postcode"]))
    address_get, address_fill = cached(_value(checks["address_line"]))
    other_get, other_fill = cached(_value(check_other_id))
    locality_get, locality_fill = cached(_value(checks["locality"]))
    region_get, region_fill = cached(_value(checks["region"]))
    p_nhs, p_given, p_middle = positions[_NHS], positions[_GIVEN], positions[_MIDDLE]
    p_family, p_dob, p_sex = positions[_FAMILY], positions[_DOB], positions[_SEX]
    p_postcode, p_address, p_other = positions[_POSTCODE], positions[_ADDRESS], positions[_OTHER]
    p_locality, p_region = positions[_LOCALITY], positions[_REGION]
    p_full = positions[_FULL] if layout is not None else -1
    new_record = tuple.__new__
    missing = Defect.MISSING
    placeholder = Defect.PLACEHOLDER
    nothing: _Value = (None, missing)
    no_date: _Date = (None, missing, None)
    pair_families = PLACEHOLDER_NAME_PAIR_FAMILIES
    is_pair = is_placeholder_name_pair

    def row(
        line: int, values: Sequence[str], local_id: str, payload: tuple[str | None, ...]
    ) -> tuple[NormalisedRecord, tuple[int, ...]]:
        nhs_number: str | None = None
        o_nhs: int = missing
        if p_nhs >= 0:
            checked = check_nhs_number(values[p_nhs])
            if isinstance(checked, str):
                nhs_number, o_nhs = checked, 0
            else:
                o_nhs = checked
        if p_full >= 0 and (raw := values[p_full]) and not raw.isspace():
            given, middle, key, o_given, family, o_family = full_get(raw) or full_fill(raw)
        else:
            if p_given >= 0:
                raw = values[p_given]
                given, middle, key, o_given = given_get(raw) or given_fill(raw)
            else:
                given = middle = key = None
                o_given = missing
            if p_family >= 0:
                raw = values[p_family]
                family, o_family = family_get(raw) or family_fill(raw)
            else:
                family, o_family = nothing
        o_middle: int = missing
        if p_middle >= 0:
            raw = values[p_middle]
            extra, o_middle = middle_get(raw) or middle_fill(raw)
            if extra is not None:
                middle = f"{middle} {extra}" if middle else extra
        if middle is not None:
            o_middle = 0
        elif family in pair_families and given is not None and is_pair(given, None, family):
            # JOHN + DOE is the placeholder "John Doe" in one column: one rule, any layout.
            given = key = family = None
            o_given = o_family = placeholder
        if p_dob >= 0:
            raw = values[p_dob]
            dob, o_dob, dob_raw = dob_get(raw) or dob_fill(raw)
        else:
            dob, o_dob, dob_raw = no_date
        if p_sex >= 0:
            raw = values[p_sex]
            sex, o_sex = sex_get(raw) or sex_fill(raw)
        else:
            sex, o_sex = nothing
        if p_postcode >= 0:
            raw = values[p_postcode]
            post, o_post = postcode_get(raw) or postcode_fill(raw)
        else:
            post, o_post = nothing
        if p_address >= 0:
            raw = values[p_address]
            address, o_address = address_get(raw) or address_fill(raw)
        else:
            address, o_address = nothing
        if p_other >= 0:
            raw = values[p_other]
            other, o_other = other_get(raw) or other_fill(raw)
        else:
            other, o_other = nothing
        if p_locality >= 0:
            raw = values[p_locality]
            locality, o_locality = locality_get(raw) or locality_fill(raw)
        else:
            locality, o_locality = nothing
        if p_region >= 0:
            raw = values[p_region]
            region, o_region = region_get(raw) or region_fill(raw)
        else:
            region, o_region = nothing
        record: NormalisedRecord = new_record(
            NormalisedRecord,
            (
                line,
                local_id,
                nhs_number,
                given,
                key,
                middle,
                family,
                dob,
                sex,
                post,
                address,
                other,
                locality,
                region,
                dob_raw,
                payload,
                False,
            ),
        )
        return record, (
            o_nhs,
            o_given,
            o_middle,
            o_family,
            o_dob,
            o_sex,
            o_post,
            o_address,
            o_other,
            o_locality,
            o_region,
        )

    return row


_Plan = tuple[list[str], list[int], dict[str, str | None], tuple[tuple[int, ...], ...]]


def _csv_plan(mapping: Mapping) -> _Plan:
    """Columns to read, slot → value position, field → column, and the joined fields.

    The values read are the local id, one column per one-column field, the payload, then
    the cells of each field of several columns. :func:`_joining` adds each such field's
    cells, joined, after the values read, where its slot's position points.
    """
    assert isinstance(mapping.record.id, str)
    wanted = [mapping.record.id]
    positions = [0] + [-1] * _REGION
    several: list[tuple[int, list[str]]] = []
    for slot, name in _SLOT_FIELDS:
        cells = mapping.columns_of(name)
        if mapping.joins_columns(name):
            several.append((slot, cells))
        elif cells:
            positions[slot] = len(wanted)
            wanted.append(cells[0])
    # Names without a column of their own come from the full name (or, for middle names,
    # from the extra given names).
    fallback = {
        "given_name": mapping.column_of("full_name"),
        "family_name": mapping.column_of("full_name"),
        "middle_names": mapping.column_of("given_name") or mapping.column_of("full_name"),
    }
    columns: dict[str, str | None] = {
        name: mapping.column_of(name) or fallback.get(name) for name in mapping.mapped_fields()
    }
    positions[_PAYLOAD_START] = len(wanted)
    wanted.extend(mapping.payload_columns)
    positions[_PAYLOAD_END] = len(wanted)
    joins: list[tuple[int, ...]] = []
    for _, cells in several:
        joins.append(tuple(range(len(wanted), len(wanted) + len(cells))))
        wanted.extend(cells)
    for extra, (slot, _) in enumerate(several):
        positions[slot] = len(wanted) + extra
    return wanted, positions, columns, tuple(joins)


def _fhir_fields(mapping: Mapping) -> FhirFields:
    record_id = mapping.record.id
    return FhirFields(
        id_system=record_id.system if isinstance(record_id, SystemRef) else None,
        nhs_system=mapping.fhir_system("nhs_number")
        if mapping.fhir_enabled("nhs_number")
        else None,
        other_system=mapping.fhir_system("other_id"),
        names=mapping.fhir_enabled("given_name") or mapping.fhir_enabled("family_name"),
        birth_date=mapping.fhir_enabled("date_of_birth"),
        gender=mapping.fhir_enabled("sex"),
        postcode=mapping.fhir_enabled("postcode"),
        address_line=mapping.fhir_enabled("address_line"),
        payload=mapping.payload_columns,
    )


_FHIR_ELEMENTS = {
    "nhs_number": "identifier",
    "given_name": "name.given",
    "middle_names": "name.given",
    "family_name": "name.family",
    "date_of_birth": "birthDate",
    "sex": "gender",
    "postcode": "address.postalCode",
    "address_line": "address.line",
    "other_id": "identifier",
}


class _Source:
    """What reading an extract needs: the fields' columns, slot positions and the id column."""

    def __init__(self, mapping: Mapping) -> None:
        self.wanted: list[str] = []
        if mapping.source.format == "fhir":
            record_id = mapping.record.id
            self.id_column = "id" if isinstance(record_id, str) else record_id.system
            self.columns: dict[str, str | None] = {
                name: _FHIR_ELEMENTS[name] for name in mapping.mapped_fields()
            }
            # Locality and region are not read from FHIR (yet): no slot.
            self.positions = [*range(12), 11 + len(mapping.payload_columns), -1, -1]
            self.joins: tuple[tuple[int, ...], ...] = ()
            self.status = self.type1 = -1
        else:
            assert isinstance(mapping.record.id, str)
            self.id_column = mapping.record.id
            self.wanted, self.positions, self.columns, self.joins = _csv_plan(mapping)
            # Columns read for checks only (verification status, Type 1), after all else.
            checks = {c: len(self.wanted) + i for i, c in enumerate(mapping.check_columns)}
            self.wanted += list(checks)
            self.status = checks.get(mapping.identifiers.nhs_number_status or "", -1)
            self.type1 = (
                checks.get(mapping.opt_out.type1_column or "", -1) if mapping.opt_out else -1
            )

    def rows(
        self,
        stack: ExitStack,
        path: Path,
        mapping: Mapping,
        collector: QualityCollector,
        *,
        progress: bool,
        today: date,
    ) -> Iterator[tuple[int, Sequence[str]]]:
        on_progress = None
        if progress and sys.stderr.isatty():
            on_progress = stack.enter_context(_ProgressBar(path)).update
        # Closed with the stack: a compiled generator is not closed when it is dropped.
        rows: Generator[tuple[int, Sequence[str]], None, None]
        if mapping.source.format == "fhir":
            rows = read_fhir(
                path,
                _fhir_fields(mapping),
                encoding=mapping.source.encoding,
                on_problem=collector.reject,
                on_skip=collector.skip,
                on_progress=on_progress,
                on_position=collector.set_position,
                today=today,
                on_unverified=collector.unverified_nhs_number,
            )
        else:
            rows = read_csv(
                path,
                self.wanted,
                encoding=mapping.source.encoding,
                delimiter=mapping.source.delimiter,
                quotechar=mapping.source.quotechar,
                on_problem=collector.reject,
                on_skip=collector.skip,
                on_progress=on_progress,
            )
            if self.status >= 0:
                rows = without_unverified(
                    stack.enter_context(closing(rows)),
                    nhs=self.positions[_NHS],
                    status=self.status,
                    on_unverified=collector.unverified_nhs_number,
                )
        return stack.enter_context(closing(rows))


def iter_records(
    path: Path,
    mapping: Mapping,
    *,
    report: QualityCollector | None = None,
    progress: bool = False,
    today: date | None = None,
    opt_outs: SourceOptOuts | None = None,
) -> Iterator[NormalisedRecord]:
    """Stream the normalised records of an extract.

    Args:
        path: the CSV, NDJSON or Bundle file.
        mapping: the validated mapping.
        report: counts every value and receives every rejected row; pass one to build the
            quality report.
        progress: show a progress bar on stderr (only when stderr is a terminal).
        today: the latest acceptable date of birth (default: today).
        opt_outs: sets each record's research-restricted flag (:mod:`client_sdk.opt_out`).

    Yields:
        One :class:`NormalisedRecord` per usable row, in file order.

    Raises:
        InputError: unknown encoding, unreadable or empty file, or mapped columns missing.
    """
    collector = report if report is not None else QualityCollector()  # problems are dropped
    source = _Source(mapping)
    collector.begin(source=path.name, format=mapping.source.format, columns=source.columns)
    positions = source.positions
    today = today or date.today()
    normalise = _row_function(mapping, positions, today=today, joins=source.joins)
    with ExitStack() as stack:
        rows = source.rows(stack, path, mapping, collector, progress=progress, today=today)
        id_position = positions[_ID]
        payload_start, payload_end = positions[_PAYLOAD_START], positions[_PAYLOAD_END]
        observe = collector.observe if report is not None else None
        cache, fill = _payload_cache()
        first_lines: dict[str, int] = {}
        for line, values in rows:
            local_id = values[id_position].strip()
            if not local_id:
                collector.reject(line, source.id_column, "no local record id")
                continue
            first = first_lines.setdefault(local_id, line)
            if first != line:
                collector.reject(line, source.id_column, _repeated_id(first, collector))
                continue
            payload = tuple(
                [cache[v] if v in cache else fill(v) for v in values[payload_start:payload_end]]
            )
            record, outcomes = normalise(line, values, local_id, payload)
            if observe is not None:
                observe(line, outcomes, record.nhs_number, record.date_of_birth)
            if opt_outs is not None:
                record = opt_outs.mark(record, values[source.type1] if source.type1 >= 0 else None)
            yield record


def _repeated_id(first: int, collector: QualityCollector) -> str:
    """Why a row whose local id an earlier row holds is rejected (the id is not quoted)."""
    return f"duplicate local record id: the same as {collector.position} {first}"


_RawBlock = list[tuple[int, Sequence[str]]]


# Pickled to the workers: a native (compiled) class would not unpickle its own state.
@mypyc_attr(native_class=False)
class _BlockNormaliser:
    """Raw rows of one block → their records and the block's quality counts.

    Picklable, so each worker builds its own normaliser (and caches) once and then
    normalises every block it is sent.
    """

    def __init__(
        self,
        mapping: Mapping,
        columns: dict[str, str | None],
        positions: list[int],
        *,
        today: date,
        max_problems: int,
        joins: tuple[tuple[int, ...], ...] = (),
        opt_outs: SourceOptOuts | None = None,
        type1: int = -1,
    ) -> None:
        self._args = (mapping, columns, positions, today, max_problems, joins, opt_outs, type1)
        self._normalise: _RowFunction | None = None
        self._payload: _PayloadCache | None = None

    def __getstate__(self) -> object:
        return self._args

    def __setstate__(self, state: object) -> None:
        self._args = state  # type: ignore[assignment]
        self._normalise = None
        self._payload = None

    def __call__(self, block: _RawBlock) -> tuple[list[NormalisedRecord], QualityCollector]:
        mapping, columns, positions, today, max_problems, joins, opt_outs, type1 = self._args
        normalise = self._normalise
        if normalise is None:
            normalise = self._normalise = _row_function(
                mapping, positions, today=today, joins=joins
            )
        if self._payload is None:
            self._payload = _payload_cache()
        cache, fill = self._payload
        collector = QualityCollector(max_problems=max_problems)
        collector.begin(source="", format=mapping.source.format, columns=columns)
        observe = collector.observe
        id_position = positions[_ID]
        payload_start, payload_end = positions[_PAYLOAD_START], positions[_PAYLOAD_END]
        records: list[NormalisedRecord] = []
        append = records.append
        for line, values in block:
            payload = tuple(
                [cache[v] if v in cache else fill(v) for v in values[payload_start:payload_end]]
            )
            record, outcomes = normalise(line, values, values[id_position].strip(), payload)
            observe(line, outcomes, record.nhs_number, record.date_of_birth)
            if opt_outs is not None:
                record = opt_outs.mark(record, values[type1] if type1 >= 0 else None)
            append(record)
        return records, collector


def record_blocks(
    path: Path,
    mapping: Mapping,
    *,
    report: QualityCollector,
    progress: bool = False,
    today: date | None = None,
    size: int = CHUNK_RECORDS,
    opt_outs: SourceOptOuts | None = None,
) -> RecordBlocks:
    """The extract as raw blocks that tokenising workers normalise themselves.

    The same records and the same quality report as :func:`iter_records`, for
    ``client_sdk.tokenise.write_batch``: this process only reads the file and sets aside
    rows with no local id; normalising and counting happen where each block is tokenised,
    so both scale with the number of workers.

    Args:
        path: the CSV, NDJSON or Bundle file.
        mapping: the validated mapping.
        report: receives every rejected row now and each block's counts once it is done.
        progress: show a progress bar on stderr (only when stderr is a terminal).
        today: the latest acceptable date of birth (default: today).
        size: rows per block (and per chunk of the batch).
        opt_outs: sets each record's research-restricted flag (:mod:`client_sdk.opt_out`).

    Returns:
        Blocks to pass to ``write_batch`` or ``tokenise_records``.

    Raises:
        InputError: as :func:`iter_records`, when the first block is read.
    """
    if size < 1:
        raise ValueError("size must be at least 1")
    source = _Source(mapping)
    report.begin(source=path.name, format=mapping.source.format, columns=source.columns)
    today = today or date.today()

    def blocks() -> Iterator[_RawBlock]:
        id_position = source.positions[_ID]
        block: _RawBlock = []
        first_lines: dict[str, int] = {}
        with ExitStack() as stack:
            rows = source.rows(stack, path, mapping, report, progress=progress, today=today)
            for line, values in rows:
                local_id = values[id_position].strip()
                if not local_id:
                    report.reject(line, source.id_column, "no local record id")
                    continue
                first = first_lines.setdefault(local_id, line)
                if first != line:
                    report.reject(line, source.id_column, _repeated_id(first, report))
                    continue
                block.append((line, values))
                if len(block) >= size:
                    yield block
                    block = []
        if block:
            yield block

    normaliser = _BlockNormaliser(
        mapping,
        source.columns,
        source.positions,
        today=today,
        max_problems=report.max_problems,
        joins=source.joins,
        opt_outs=opt_outs,
        type1=source.type1,
    )
    return RecordBlocks(blocks(), normaliser, report.absorb)


class _ProgressBar:
    """A rich progress bar over the file's bytes, on stderr."""

    def __init__(self, path: Path) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self._task = self._progress.add_task(f"reading {path.name}", total=path.stat().st_size)

    def __enter__(self) -> _ProgressBar:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def update(self, done: int) -> None:
        self._progress.update(self._task, completed=done)
