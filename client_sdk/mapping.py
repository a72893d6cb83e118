"""The mapping file: which source columns are which identifiers, and what may leave.

A mapping is TOML (docs/mapping.md has one full example per input kind)::

    [source]
    format = "csv"                  # "csv" or "fhir" (FHIR R4 Patient: NDJSON or a Bundle)
    encoding = "cp1252"             # CSV: "utf-8" (a BOM is skipped), "cp1252", any Python codec
    delimiter = ","                 # CSV only
    country = "GB"                  # postcodes: "GB" checks the UK format

    [record]
    id = "HOSP_NO"                  # the local record id: never leaves the organisation

    [identifiers]
    nhs_number = "NHS NUMBER"
    full_name = { column = "PATIENT NAME", layout = "FAMILY, GIVEN" }
    date_of_birth = { column = "D.O.B", formats = ["%d/%m/%Y"] }
    sex = "GENDER"
    postcode = "POST CODE"

    [payload]
    columns = ["AE_ATTENDANCES_12M"]

    [opt_out]                       # optional: Type 1 opt-outs coded in the extract
    type1_column = "OPT_OUT_CODES"  # records holding a Type 1 code are research-restricted
    type1_codes = ["827241000000103"]   # the default (SNOMED CT Type 1 dissent)

A CSV mapping may name the NHS number's verification status column
(``nhs_number_status = "NHS_NO_STATUS"`` in ``[identifiers]``): a number whose status says
the trace failed (``04``, ``05``, ``07``, as the FHIR reader reads the same codes) feeds no
NHS number key, and the quality report counts it.

A field spread over several columns is a list (``given_name = ["FORENAME1", "FORENAME2"]``,
``postcode = ["PC_OUT", "PC_IN"]``), a date of birth in three columns is
``{ day = "…", month = "…", year = "…" }``, and a postcode inside a free-text address is
``{ column = "ADDRESS", find = true }``, or in the last address line that holds one
``{ column = ["ADDR1", "ADDR2", "ADDR3"], find = true }`` (docs/mapping.md gives the rules).
An ``address_line`` of several columns joins its lines; ``locality`` (suburb, town) and
``region`` (state, county) are one column each; from FHIR they are ``address.city`` and
``address.state`` (else ``address.district``), read only when the mapping sets them
``true`` (no spec of the project's uses them, and an address's city is often missing).

Everything the mapping does not name stays on site. For FHIR the identifiers come from
their standard elements; ``[identifiers]`` may switch fields off (``sex = false``) or
name identifier systems (``nhs_number = { system = "…" }``, ``other_id = { system = "…" }``),
and ``[record] id`` is ``"id"`` (the resource id) or ``{ system = "…" }`` (an identifier).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
)

from client_sdk.errors import MappingError
from client_sdk.normalise.dates import DateFormatError, compile_date_format
from client_sdk.normalise.names import FullNameLayout
from client_sdk.normalise.postcode import UK_COUNTRIES

__all__ = [
    "FHIR_NHS_NUMBER_SYSTEM",
    "IDENTIFIER_FIELDS",
    "MULTI_COLUMN_FIELDS",
    "TYPE1_DISSENT_CODES",
    "ColumnRef",
    "DatePartsRef",
    "DateRef",
    "FullNameRef",
    "Identifiers",
    "Mapping",
    "OptOutSection",
    "PayloadSection",
    "PostcodeFindRef",
    "RecordSection",
    "SourceSection",
    "SystemRef",
    "load_mapping",
    "parse_mapping",
]

FHIR_NHS_NUMBER_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"

IDENTIFIER_FIELDS = (
    "nhs_number",
    "given_name",
    "middle_names",
    "family_name",
    "full_name",
    "date_of_birth",
    "sex",
    "postcode",
    "address_line",
    "other_id",
    "locality",
    "region",
)

MULTI_COLUMN_FIELDS = ("given_name", "middle_names", "family_name", "postcode", "address_line")
"""Fields that may be spread over several columns, given as a list of column names."""

_FHIR_OPT_IN = frozenset({"locality", "region"})
"""FHIR fields read only when the mapping sets them ``true`` (``address.city``, ``state``)."""

_STRICT = ConfigDict(extra="forbid", frozen=True)

TYPE1_DISSENT_CODES: tuple[str, ...] = ("827241000000103",)
"""The default Type 1 codes: SNOMED CT 827241000000103, "Dissent from secondary use of
general practitioner patient identifiable data (finding)". A mapping may list others (a
practice still on legacy codes); a withdrawal code (827261000000102, "Dissent withdrawn")
is deliberately not among them."""


class SourceSection(BaseModel):
    """``[source]``: what kind of file, and how to read it."""

    model_config = _STRICT

    format: Literal["csv", "fhir"]
    encoding: str = "utf-8"
    delimiter: str = Field(default=",", min_length=1, max_length=1)
    quotechar: str = Field(default='"', min_length=1, max_length=1)
    country: str = Field(default="GB", pattern=r"^[A-Za-z]{2}$")


class SystemRef(BaseModel):
    """A FHIR identifier, by its ``system`` URI."""

    model_config = _STRICT

    system: str = Field(min_length=1)


class ColumnRef(BaseModel):
    """A CSV column by name (the long form of ``field = "COLUMN"``)."""

    model_config = _STRICT

    column: str = Field(min_length=1)


class FullNameRef(BaseModel):
    """One column holding the whole name, and how its parts are laid out."""

    model_config = _STRICT

    column: str = Field(min_length=1)
    layout: FullNameLayout = "FAMILY, GIVEN"


class DateRef(BaseModel):
    """A date column and its ``strptime``-style formats, tried in order."""

    model_config = _STRICT

    column: str | None = Field(default=None, min_length=1)
    formats: list[str] = Field(default_factory=lambda: ["%Y-%m-%d"], min_length=1)

    @field_validator("formats")
    @classmethod
    def _formats_compile(cls, formats: list[str]) -> list[str]:
        problems: list[str] = []
        for fmt in formats:
            try:
                compile_date_format(fmt)
            except DateFormatError as exc:
                problems.append(f"format {fmt!r}: {exc}")
        if problems:
            raise ValueError("; ".join(problems))
        return formats


class DatePartsRef(BaseModel):
    """A date written in three columns: the day, the month (number or name) and the year."""

    model_config = _STRICT

    day: str = Field(min_length=1)
    month: str = Field(min_length=1)
    year: str = Field(min_length=1)


_Columns = Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)]
"""Several columns of one field, in order."""


class PostcodeFindRef(BaseModel):
    """Free-text address columns whose last UK postcode-shaped sequence is the postcode.

    With several columns (the lines of an address), they are searched last to first and
    the first column holding a postcode gives it: the postcode is usually on the last
    line that has a value.
    """

    model_config = _STRICT

    column: Annotated[str, Field(min_length=1)] | _Columns
    find: bool


_Plain = str | ColumnRef | bool


def _date_form(value: Any) -> str:
    """Which form a date of birth takes, so that errors speak of that form only."""
    if isinstance(value, DateRef | DatePartsRef):  # serialising
        return "Table" if isinstance(value, DateRef) else "DateParts"
    if isinstance(value, dict):
        return "DateParts" if value.keys() & {"day", "month", "year"} else "Table"
    return "Plain"


def _postcode_form(value: Any) -> str:
    """Which form a postcode takes, so that errors speak of that form only."""
    if isinstance(value, ColumnRef | PostcodeFindRef):  # serialising
        return "Table" if isinstance(value, ColumnRef) else "PostcodeFind"
    if isinstance(value, dict):
        return "PostcodeFind" if "find" in value else "Table"
    return "Columns" if isinstance(value, list) else "Plain"


_DateOfBirth = Annotated[
    Annotated[str | bool, Tag("Plain")]
    | Annotated[DateRef, Tag("Table")]
    | Annotated[DatePartsRef, Tag("DateParts")],
    Discriminator(_date_form),
]
_Postcode = Annotated[
    Annotated[str | bool, Tag("Plain")]
    | Annotated[ColumnRef, Tag("Table")]
    | Annotated[_Columns, Tag("Columns")]
    | Annotated[PostcodeFindRef, Tag("PostcodeFind")],
    Discriminator(_postcode_form),
]


class Identifiers(BaseModel):
    """``[identifiers]``: canonical identifier → source column (CSV) or switch (FHIR)."""

    model_config = _STRICT

    nhs_number: _Plain | SystemRef | None = None
    given_name: _Plain | _Columns | None = None
    middle_names: _Plain | _Columns | None = None
    family_name: _Plain | _Columns | None = None
    full_name: FullNameRef | None = None
    date_of_birth: _DateOfBirth | None = None
    sex: _Plain | None = None
    postcode: _Postcode | None = None
    address_line: _Plain | _Columns | None = None
    other_id: _Plain | SystemRef | None = None
    locality: _Plain | None = None
    region: _Plain | None = None
    nhs_number_status: Annotated[str, Field(min_length=1)] | None = None
    """CSV: the NHS number's verification status column (not an identifier: never leaves)."""


class RecordSection(BaseModel):
    """``[record]``: the local record id (a column, ``"id"`` for FHIR, or a FHIR system)."""

    model_config = _STRICT

    id: Annotated[str, Field(min_length=1)] | SystemRef


class PayloadSection(BaseModel):
    """``[payload]``: the non-identifying columns allowed to leave, in this order."""

    model_config = _STRICT

    columns: list[str] = Field(default_factory=list)


class OptOutSection(BaseModel):
    """``[opt_out]``: the column where Type 1 opt-outs are coded, and their codes (CSV)."""

    model_config = _STRICT

    type1_column: Annotated[str, Field(min_length=1)] | None = None
    type1_codes: Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)] = Field(
        default_factory=lambda: list(TYPE1_DISSENT_CODES)
    )


class Mapping(BaseModel):
    """A validated mapping file. Build one with :func:`load_mapping`."""

    model_config = _STRICT

    source: SourceSection
    record: RecordSection
    identifiers: Identifiers = Field(default_factory=Identifiers)
    payload: PayloadSection = Field(default_factory=PayloadSection)
    opt_out: OptOutSection | None = None

    @property
    def check_columns(self) -> list[str]:
        """The CSV columns read only for checks, never sent: verification status, Type 1."""
        columns = [self.identifiers.nhs_number_status]
        if self.opt_out is not None:
            columns.append(self.opt_out.type1_column)
        return [c for c in columns if c is not None]

    @property
    def payload_columns(self) -> list[str]:
        """The payload columns, in the order their values appear in each record."""
        return list(self.payload.columns)

    @property
    def date_formats(self) -> list[str]:
        """The date-of-birth formats (ISO for FHIR)."""
        dob = self.identifiers.date_of_birth
        if self.source.format == "fhir" or not isinstance(dob, DateRef):
            return ["%Y-%m-%d"]
        return list(dob.formats)

    def column_of(self, name: str) -> str | None:
        """The CSV column mapped to canonical field ``name``, or ``None`` when unmapped.

        A field read from several columns is named by them all, joined with `` + ``
        (``"FORENAME1 + FORENAME2"``), as the quality report shows it.
        """
        columns = self.columns_of(name)
        return " + ".join(columns) if columns else None

    def columns_of(self, name: str) -> list[str]:
        """The CSV columns read for canonical field ``name``, in order (empty when unmapped).

        A list of one column is that column; date parts are day, month, year.
        """
        value = getattr(self.identifiers, name)
        if isinstance(value, str):
            return [value]
        if isinstance(value, list):
            return list(value)
        if isinstance(value, PostcodeFindRef):
            return [value.column] if isinstance(value.column, str) else list(value.column)
        if isinstance(value, ColumnRef | FullNameRef):
            return [value.column]
        if isinstance(value, DateRef):
            return [value.column] if value.column is not None else []
        if isinstance(value, DatePartsRef):
            return [value.day, value.month, value.year]
        return []

    def joins_columns(self, name: str) -> bool:
        """Whether CSV field ``name`` is read from several columns (a list, or date parts)."""
        return len(self.columns_of(name)) > 1 or isinstance(
            getattr(self.identifiers, name), DatePartsRef
        )

    @property
    def finds_postcode(self) -> bool:
        """Whether the postcode is found inside a free-text address column."""
        postcode = self.identifiers.postcode
        return isinstance(postcode, PostcodeFindRef) and postcode.find

    def fhir_enabled(self, name: str) -> bool:
        """Whether FHIR field ``name`` is read (every standard field, unless switched off)."""
        value = getattr(self.identifiers, name)
        if name == "other_id":
            return isinstance(value, SystemRef)
        if name in _FHIR_OPT_IN:
            return value is True
        return value is not False

    def fhir_system(self, name: str) -> str | None:
        """The identifier system of ``nhs_number`` or ``other_id`` for FHIR."""
        value = getattr(self.identifiers, name)
        if isinstance(value, SystemRef):
            return value.system
        return FHIR_NHS_NUMBER_SYSTEM if name == "nhs_number" else None

    def mapped_fields(self) -> list[str]:
        """The canonical fields this mapping fills (``full_name`` gives given and family)."""
        fields: list[str] = []
        for name in IDENTIFIER_FIELDS:
            if self.source.format == "fhir":
                used = self.fhir_enabled(name) and name != "full_name"
            else:
                used = self.column_of(name) is not None
            if not used:
                continue
            if name == "full_name":
                fields.extend(f for f in ("given_name", "family_name") if f not in fields)
            elif name not in fields:
                fields.append(name)
        if "given_name" in fields and "middle_names" not in fields:
            fields.insert(fields.index("given_name") + 1, "middle_names")
        return [f for f in IDENTIFIER_FIELDS if f in fields]


_UNION_MEMBERS = {
    "str",
    "bool",
    "list[constrained-str]",
    "Plain",
    "Table",
    "DateParts",
    "PostcodeFind",
    "Columns",
    "ColumnRef",
    "SystemRef",
    "DateRef",
    "DatePartsRef",
    "FullNameRef",
    "PostcodeFindRef",
}
_EXPECTED = {
    "date_of_birth": 'a column name, { column = "...", formats = ["%d/%m/%Y"] }, '
    'or { day = "...", month = "...", year = "..." }',
    "postcode": 'a column name, a list of columns (["OUTWARD", "INWARD"]), '
    '{ column = "ADDRESS", find = true }, or { column = ["LINE1", "LINE2"], find = true }',
    "full_name": '{ column = "...", layout = "FAMILY, GIVEN" }',
    "id": 'a column name ("id" for FHIR), or { system = "..." }',
}


def _validation_problems(exc: ValidationError) -> list[str]:
    """One readable problem per location, union members folded together."""
    grouped: dict[str, list[tuple[str, str]]] = {}
    for error in exc.errors():
        parts = [str(p) for p in error["loc"] if str(p) not in _UNION_MEMBERS]
        grouped.setdefault(".".join(parts) or "mapping", []).append((error["type"], error["msg"]))
    problems: list[str] = []
    for where, errors in grouped.items():
        specific = [msg for kind, msg in errors if not kind.endswith(("_type", "_parsing"))]
        if specific or len(errors) == 1:
            problems.extend(f"{where}: {msg}" for msg in specific or [errors[0][1]])
            continue
        if any(other.startswith(where + ".") for other in grouped):
            continue
        field = where.rsplit(".", 1)[-1]
        default = (
            'a column name, a list of column names, or { column = "..." }'
            if field in MULTI_COLUMN_FIELDS
            else 'a column name, or { column = "..." }'
        )
        expected = _EXPECTED.get(field, default)
        problems.append(f"{where}: expected {expected}")
    return problems


def _semantic_problems(mapping: Mapping) -> list[str]:
    problems: list[str] = []
    ids = mapping.identifiers
    csv = mapping.source.format == "csv"
    if ids.full_name is not None and (ids.given_name or ids.family_name):
        problems.append("identifiers: full_name cannot be combined with given_name/family_name")
    if csv:
        if not isinstance(mapping.record.id, str):
            problems.append("record.id: a CSV local id is a column name")
        for name in IDENTIFIER_FIELDS:
            value = getattr(ids, name)
            if isinstance(value, bool):
                problems.append(f"identifiers.{name}: a CSV field is a column name, not {value}")
            elif isinstance(value, SystemRef):
                problems.append(f"identifiers.{name}: 'system' is for FHIR; give a column")
            elif isinstance(value, DateRef) and value.column is None:
                problems.append(f"identifiers.{name}: a column is required")
        if not mapping.mapped_fields():
            problems.append("identifiers: no identifier is mapped")
        problems.extend(_column_problems(mapping))
    else:
        if ids.full_name is not None:
            problems.append("identifiers.full_name: FHIR names come from Patient.name")
        for name in IDENTIFIER_FIELDS:
            value = getattr(ids, name)
            if isinstance(value, str | ColumnRef | list | DatePartsRef | PostcodeFindRef):
                problems.append(
                    f"identifiers.{name}: FHIR fields are true/false (or {{ system = ... }})"
                )
            if isinstance(value, DateRef) and value.column is not None:
                problems.append(f"identifiers.{name}: FHIR dates are ISO; give no column")
        if isinstance(mapping.record.id, str) and mapping.record.id != "id":
            problems.append('record.id: for FHIR use "id" or { system = "..." }')
    if len(set(mapping.payload.columns)) != len(mapping.payload.columns):
        problems.append("payload.columns: a column is listed twice")
    return problems + _check_column_problems(mapping)


def _check_column_problems(mapping: Mapping) -> list[str]:
    """The verification status and Type 1 columns: CSV only, each its own column."""
    problems: list[str] = []
    status = mapping.identifiers.nhs_number_status
    type1 = mapping.opt_out.type1_column if mapping.opt_out is not None else None
    if mapping.source.format != "csv":
        if status is not None:
            problems.append(
                "identifiers.nhs_number_status: FHIR carries the status in the identifier"
            )
        if type1 is not None:
            problems.append("opt_out.type1_column: CSV only (a Patient resource has no codes)")
        return problems
    if status is not None and mapping.column_of("nhs_number") is None:
        problems.append("identifiers.nhs_number_status: no nhs_number is mapped")
    taken = {c for name in IDENTIFIER_FIELDS for c in mapping.columns_of(name)}
    taken |= set(mapping.payload.columns)
    if isinstance(mapping.record.id, str):
        taken.add(mapping.record.id)
    for where, column in (
        ("identifiers.nhs_number_status", status),
        ("opt_out.type1_column", type1),
    ):
        if column is not None and column in taken:
            problems.append(f"{where}: {column!r} is already an identifier, the id or payload")
    if status is not None and status == type1:
        problems.append("opt_out.type1_column: the same column as nhs_number_status")
    return problems


def _column_problems(mapping: Mapping) -> list[str]:
    """A CSV mapping's columns: each read for one identifier, none of them in the payload."""
    problems: list[str] = []
    owner: dict[str, str] = {}
    postcode = mapping.identifiers.postcode
    if isinstance(postcode, PostcodeFindRef):
        country = mapping.source.country.upper()
        if postcode.find and country not in UK_COUNTRIES:
            problems.append(
                f"identifiers.postcode: find = true looks for UK postcodes; [source] country "
                f"is {country!r}: map the postcode column itself"
            )
        elif not postcode.find:
            problems.append("identifiers.postcode: find = false: give the column by its name")
    for name in IDENTIFIER_FIELDS:
        columns = mapping.columns_of(name)
        if len(set(columns)) != len(columns):
            problems.append(f"identifiers.{name}: a column is listed twice")
        for column in dict.fromkeys(columns):
            other = owner.setdefault(column, name)
            if other == name:
                continue
            # A free-text address holds the first line and the postcode.
            if {other, name} == {"postcode", "address_line"} and mapping.finds_postcode:
                continue
            problems.append(
                f"identifiers.{name}: column {column!r} is already mapped to {other}; "
                f"a column is one identifier"
            )
    record_id = mapping.record.id
    if isinstance(record_id, str):
        owner.setdefault(record_id, "the local id")
    for column in mapping.payload.columns:
        if column in owner:
            problems.append(f"payload.columns: {column!r} is an identifier or the local id")
    return problems


def parse_mapping(data: dict[str, Any], *, source: str = "mapping") -> Mapping:
    """Validate mapping data (already parsed from TOML), collecting every problem.

    Args:
        data: the TOML document as a dictionary.
        source: how to name the mapping in the error (a file name).

    Returns:
        The validated :class:`Mapping`.

    Raises:
        MappingError: listing every problem found.
    """
    try:
        mapping = Mapping.model_validate(data)
    except ValidationError as exc:
        raise MappingError(source, _validation_problems(exc)) from None
    problems = _semantic_problems(mapping)
    if problems:
        raise MappingError(source, problems)
    return mapping


def load_mapping(path: Path) -> Mapping:
    """Read and validate a mapping TOML file.

    Args:
        path: the mapping file.

    Returns:
        The validated :class:`Mapping`.

    Raises:
        MappingError: the file is missing, not TOML, or does not validate (every problem
            listed at once).
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise MappingError(str(path), [f"cannot read: {exc.strerror}"]) from None
    except UnicodeDecodeError:
        raise MappingError(str(path), ["not UTF-8 text"]) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise MappingError(str(path), [f"not valid TOML: {exc}"]) from None
    return parse_mapping(data, source=str(path))
