"""One extract row → its :class:`NormalisedRecord` and per-field outcomes: the hot path.

Both readers give a row as a list of values in a fixed *slot* order (the ``SLOT_*``
positions: the id, each identifier field, the payload's bounds); :func:`row_function`
builds, for one mapping, the function that normalises such a row. Normalisers are pure and
values repeat (names, dates, postcodes), so each field's results are memoised in a
bounded cache for the run. Reading the extract, and what is done with rows that cannot be
used, are :mod:`client_sdk.pipeline`'s.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date
from operator import itemgetter
from typing import TypeVar

from client_sdk.mapping import Mapping
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
from client_sdk.readers.columns import (
    SEPARATOR,
    find_postcode_in_cells,
    joined_text,
    name_text,
)
from client_sdk.record import NormalisedRecord

__all__ = [
    "CACHE_LIMIT",
    "SLOT_ADDRESS",
    "SLOT_DOB",
    "SLOT_FAMILY",
    "SLOT_FIELDS",
    "SLOT_FULL",
    "SLOT_GIVEN",
    "SLOT_ID",
    "SLOT_LOCALITY",
    "SLOT_MIDDLE",
    "SLOT_NHS",
    "SLOT_OTHER",
    "SLOT_PAYLOAD_END",
    "SLOT_PAYLOAD_START",
    "SLOT_POSTCODE",
    "SLOT_REGION",
    "SLOT_SEX",
    "PayloadCache",
    "RowFunction",
    "date_of_birth_check",
    "payload_cache",
    "row_function",
]

CACHE_LIMIT = 1 << 17
"""Entries per field cache; a full cache is emptied and refilled (memory stays bounded)."""

# Slot order shared by both readers' value lists: the id, ten fields, the payload's start
# and end, then the fields added since (the FHIR reader's values stop at the payload).
(
    SLOT_ID,
    SLOT_NHS,
    SLOT_GIVEN,
    SLOT_MIDDLE,
    SLOT_FAMILY,
    SLOT_FULL,
    SLOT_DOB,
    SLOT_SEX,
    SLOT_POSTCODE,
    SLOT_ADDRESS,
    SLOT_OTHER,
) = range(11)
SLOT_PAYLOAD_START, SLOT_PAYLOAD_END, SLOT_LOCALITY, SLOT_REGION = range(11, 15)
SLOT_FIELDS = (
    (SLOT_NHS, "nhs_number"),
    (SLOT_GIVEN, "given_name"),
    (SLOT_MIDDLE, "middle_names"),
    (SLOT_FAMILY, "family_name"),
    (SLOT_FULL, "full_name"),
    (SLOT_DOB, "date_of_birth"),
    (SLOT_SEX, "sex"),
    (SLOT_POSTCODE, "postcode"),
    (SLOT_ADDRESS, "address_line"),
    (SLOT_OTHER, "other_id"),
    (SLOT_LOCALITY, "locality"),
    (SLOT_REGION, "region"),
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


PayloadCache = tuple[dict[str, str | None], Callable[[str], str | None]]


def payload_cache() -> PayloadCache:
    """A payload cell → the value that leaves (:func:`payload_value`): a cache and its filler.

    Used inline as ``cache[raw] if raw in cache else fill(raw)``: a call per cell would
    cost more than the cache saves.
    """
    cache: dict[str, str | None] = {}
    return cache, _filler(payload_value, cache)


_Value = tuple[str | None, int]
"""A normalised value or ``None``, and its outcome (0 or a :class:`Defect`)."""
_Date = tuple[str | None, int, str | None, str | None]
"""A normalised date or ``None``, its outcome, the digits of a date that does not exist, and
a partial date's ``YYYY`` or ``YYYY-MM``."""
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


RowFunction = Callable[
    [int, Sequence[str], str, tuple[str | None, ...]], tuple[NormalisedRecord, tuple[int, ...]]
]
"""(line, slot values, local id, payload) → the record and its per-field outcomes."""


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


def date_of_birth_check(mapping: Mapping, *, today: date) -> Callable[[str], str | None]:
    """The mapping's date of birth from its raw cell (cells joined with :data:`SEPARATOR`
    when it has several columns): ISO ``YYYY-MM-DD``, or ``None`` when not valid.

    For a pass over the dates alone (:func:`client_sdk.pipeline.dates_of_birth`).
    """
    check = _date_check(mapping, _date_parser(mapping, today=today))

    def value(raw: str) -> str | None:
        return check(raw)[0]

    return value


def _date_parser(mapping: Mapping, *, today: date) -> DateParser:
    """The mapping's date parser; FHIR's ``YYYY-MM`` is a partial date there."""
    return DateParser(
        mapping.date_formats, today=today, iso_year_month=mapping.source.format == "fhir"
    )


def _date_check(mapping: Mapping, dates: DateParser) -> Callable[[str], _Date]:
    """The date of birth's value and outcome, with the digits of a date that does not exist
    and a partial date's parts.

    The digits (``date_of_birth_raw``) are worked out only for an invalid date and the
    parts only for a partial one, so a valid extract pays nothing for them.
    """
    if mapping.source.format == "csv" and mapping.joins_columns("date_of_birth"):

        def date_parts(raw: str) -> _Date:
            parts = raw.split(SEPARATOR)
            if len(parts) != 3:
                return None, Defect.INVALID, None, None
            result = dates.check_parts(*parts)
            if isinstance(result, str):
                return result, 0, None, None
            if result is Defect.PARTIAL:
                return None, result, None, dates.partial_parts(*parts)
            raw_digits = dates.raw_parts_digits(*parts) if result is Defect.INVALID else None
            return None, result, raw_digits, None

        return date_parts

    def one_cell(raw: str) -> _Date:
        result = dates.check(raw)
        if isinstance(result, str):
            return result, 0, None, None
        if result is Defect.PARTIAL:
            return None, result, None, dates.partial(raw)
        return None, result, dates.raw_digits(raw) if result is Defect.INVALID else None, None

    return one_cell


def _after(text: Callable[[str], str], check: Callable[[str], _T]) -> Callable[[str], _T]:
    """``check`` of the text that ``text`` makes of a field's joined cells."""

    def joined(raw: str) -> _T:
        return check(text(raw))

    return joined


def _joining(row: RowFunction, joins: Sequence[tuple[int, ...]]) -> RowFunction:
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


def row_function(
    mapping: Mapping,
    positions: list[int],
    *,
    today: date,
    joins: Sequence[tuple[int, ...]] = (),
) -> RowFunction:
    """The hot path: one row of slot values → its record and per-field outcomes.

    Every normaliser is pure, so each field gets a bounded cache from raw text to
    (value, outcome); a cache hit costs one dictionary lookup. Outcomes are 0 (valid) or a
    :class:`Defect`, in the order of :data:`client_sdk.quality.FIELDS`. ``joins`` lists,
    for each field read from several columns, the positions of its cells (see
    :func:`client_sdk.pipeline.iter_records` works them out).
    """
    row = _one_value_row_function(mapping, positions, today=today)
    return _joining(row, joins) if joins else row


def _one_value_row_function(mapping: Mapping, positions: list[int], *, today: date) -> RowFunction:
    """:func:`row_function` for rows that hold one value per field."""
    full_name = mapping.identifiers.full_name
    layout: FullNameLayout | None = full_name.layout if full_name is not None else None
    if mapping.source.format == "fhir":
        layout = "GIVEN FAMILY"
    dates = _date_parser(mapping, today=today)
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
    p_nhs, p_given, p_middle = positions[SLOT_NHS], positions[SLOT_GIVEN], positions[SLOT_MIDDLE]
    p_family, p_dob, p_sex = positions[SLOT_FAMILY], positions[SLOT_DOB], positions[SLOT_SEX]
    p_postcode, p_address, p_other = (
        positions[SLOT_POSTCODE],
        positions[SLOT_ADDRESS],
        positions[SLOT_OTHER],
    )
    p_locality, p_region = positions[SLOT_LOCALITY], positions[SLOT_REGION]
    p_full = positions[SLOT_FULL] if layout is not None else -1
    new_record = tuple.__new__
    missing = Defect.MISSING
    placeholder = Defect.PLACEHOLDER
    nothing: _Value = (None, missing)
    no_date: _Date = (None, missing, None, None)
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
            dob, o_dob, dob_raw, dob_partial = dob_get(raw) or dob_fill(raw)
        else:
            dob, o_dob, dob_raw, dob_partial = no_date
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
                dob_partial,
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
