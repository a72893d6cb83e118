"""Read FHIR R4 ``Patient`` resources: NDJSON, a Bundle, or pretty-printed resources.

Everything streams; memory stays flat however many resources the file holds.

- NDJSON (a FHIR Bulk Data export: one resource a line) is read a line at a time and each
  resource is numbered by its **line**. A line that is not a JSON object is reported with
  its line number and the reading goes on.
- A ``Bundle`` (``searchset``, ``collection``, ``transaction``, ``batch``, ``history``, ...;
  minified on one line or pretty-printed) is parsed incrementally with ijson, one
  ``entry`` at a time, and each resource is numbered by its **entry** (the position in
  ``Bundle.entry``, from 1). An entry that is not an object, or has a resource that is not
  one, is reported with its entry number and the reading goes on. An entry without a
  resource is skipped when it carries a ``request`` or ``response`` (a transaction's
  ``DELETE``, a history's deletion), and reported otherwise. JSON that breaks mid-Bundle
  (a cut-off download) cannot be read past: one-line :class:`InputError` naming the last
  entry read.
- Several Bundles in one file, one after another (concatenated, or one a line as some
  exporters page a search) are read as one extract: entries are numbered through the
  file, across the Bundles (the second Bundle's first entry follows the first Bundle's
  last). Several Bundle *files* make one extract by concatenating them
  (``cat page-*.json > extract.json``): one run makes one batch with one quality report.
- Any of these may be gzip-compressed (told by the magic number, whatever the name).
- A file of one or more pretty-printed resources (a saved ``GET Patient/{id}``) is numbered
  by resource, from 1.
- A Bundle whose ``entry`` is not a list (an object, a string) cannot be read: one-line
  :class:`InputError`.
- A file that is none of these is a one-line :class:`InputError`. A UTF-8 byte-order mark
  is allowed; the mapping's encoding applies (FHIR JSON is UTF-8).

Each resource, whatever the container: one without a ``resourceType`` is reported, and so
is one whose type looks like a misspelt ``Bundle`` or ``Patient`` (``Bundel``, ``patient``)
or that holds ``entry`` without being a Bundle;
resources of other types (Organization, Practitioner, Observation, OperationOutcome, a
searchset's ``include`` entries) are skipped and counted, never reported; a Patient whose
``link`` says it was ``replaced-by`` another (a merged duplicate) is skipped and counted.
Inactive patients (``active: false``) and deceased ones are read like any other: they are
still people to link. ``meta``, ``text``, ``contained`` and every ``extension`` are ignored.

From each Patient (a name, identifier or address is *current* unless its ``period.end`` is
before today or its ``period.start`` after it, compared at the precision written;
``use = old`` and ``maiden`` are never current):

- local id: the resource ``id``, or the ``identifier`` with the mapping's system.
- NHS number: the ``identifier`` with system ``https://fhir.nhs.uk/Id/nhs-number`` or an
  older spelling of it (:data:`NHS_NUMBER_SYSTEMS`), or the system the mapping names. A
  number whose UK Core / CareConnect ``NHSNumberVerificationStatus`` is ``04`` (trace
  attempted, no match or several), ``05`` (trace to be resolved: number or details
  conflict) or ``07`` (number not present) is not used: the trace says it may belong to
  someone else, and a wrong NHS number is the costliest false link. ``01`` (verified),
  ``02``, ``03``, ``06``, ``08`` and no status are used. Current before not, verified
  before not, then the first.
- name: the current ``official`` name, else ``usual``, a name without ``use``, ``temp``,
  ``nickname``, ``anonymous``; among equals the latest ``period.start``, then the first.
  With no current name, the best of the others (``old``, then ``maiden``). All ``given``
  and ``family``, or ``text`` when both are absent.
- ``birthDate`` as written; a partial date (``1980``, ``1980-03``: FHIR's ``date`` allows
  them, and UK Core for a birthday nobody knows) is read as partial downstream, never
  guessed into a full date; ``_birthDate`` extensions are ignored.
- ``gender`` as written.
- address: the current ``home`` address, else one without ``use``, ``temp``, ``billing``,
  ``work``; among equals the latest ``period.start``, then the first; with no current
  address, the best of the others. ``postalCode`` and the first ``line``; the locality is
  its ``city``, the region its ``state``, else its ``district`` (UK Core puts the county
  in ``district``; other countries put a state or province in ``state``).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from difflib import get_close_matches
from pathlib import Path
from typing import Any, Literal, TextIO

import ijson

from client_sdk.errors import InputError
from client_sdk.mapping import FHIR_NHS_NUMBER_SYSTEM
from client_sdk.normalise.nhs_number import UNTRUSTED_NHS_STATUSES
from client_sdk.readers.compressed import bytes_read
from client_sdk.readers.csv import (
    NUL_REASON,
    ProblemSink,
    has_undecodable,
    open_text,
)

__all__ = ["NHS_NUMBER_SYSTEMS", "FhirFields", "Position", "patient_values", "read_fhir"]

logger = logging.getLogger(__name__)

NHS_NUMBER_SYSTEMS = frozenset(
    {
        FHIR_NHS_NUMBER_SYSTEM,
        "http://fhir.nhs.uk/Id/nhs-number",  # seen in systems that predate UK Core
        "http://fhir.nhs.net/Id/nhs-number",  # GP Connect / DSTU2
        "urn:oid:2.16.840.1.113883.2.1.4.1",  # the NHS number's OID
    }
)
"""Identifier systems read as the NHS number when the mapping keeps the standard one."""

_VERIFIED = "01"

_NAME_USE_RANK = {
    "official": 0,
    "usual": 1,
    None: 2,
    "temp": 3,
    "nickname": 4,
    "anonymous": 5,
    "old": 6,
    "maiden": 7,
}
_ADDRESS_USE_RANK = {"home": 0, None: 1, "temp": 2, "billing": 3, "work": 4, "old": 5}
_NEVER_CURRENT = frozenset({"old", "maiden"})
_UNKNOWN_USE = 2  # a code outside FHIR's value set ranks with no ``use``

_HEAD_LIMIT = 16 << 20  # the longest line tried as an NDJSON resource (characters)
_PRESCAN = 1 << 12  # small reads: a Bundle is known by its first key, a blank file soon
_ITEMS = 1 << 14  # ijson builds a whole read's entries at once: keep reads small
_LOOKAHEAD_LINES = 10  # lines tried for NDJSON when the first line is broken
_PROGRESS_EVERY = 0x3FFF
_SURROGATE = re.compile("[\ud800-\udfff]")

_Kind = Literal["ndjson", "bundle", "resources"]
Position = Literal["line", "entry", "resource"]
"""What a reader's positions count: CSV and NDJSON lines, Bundle entries, resources."""
_POSITIONS: dict[_Kind, Position] = {"ndjson": "line", "bundle": "entry", "resources": "resource"}
_Resources = Iterator[tuple[int, Any]]
# Types that hold entries, and the names a misspelt type is compared with (case ignored).
_CONTAINER_TYPES = frozenset({"Bundle", "Parameters", "List"})
_MISSPELT = ("bundle", "patient")


@dataclass(frozen=True, slots=True)
class FhirFields:
    """What to take from each Patient.

    Attributes:
        id_system: identifier system of the local id, or ``None`` for the resource id.
        nhs_system: identifier system of the NHS number, or ``None`` to skip it (the
            standard system also accepts its older spellings, :data:`NHS_NUMBER_SYSTEMS`).
        other_system: identifier system of the other id, or ``None`` to skip it.
        names: read the name; birth_date, gender, postcode, address_line, locality and
            region likewise.
        payload: dotted element paths (``maritalStatus.coding.code``); the first value
            of a list is taken.
    """

    id_system: str | None
    nhs_system: str | None
    other_system: str | None
    names: bool
    birth_date: bool
    gender: bool
    postcode: bool
    address_line: bool
    payload: Sequence[str]
    locality: bool = False
    region: bool = False


def _dicts(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list):
        return [item for item in value if isinstance(item, dict)]
    return []


def _strings(value: Any) -> list[str]:
    """A string or a list's strings (R4 ``given`` is a list; DSTU2 ``family`` was one)."""
    if isinstance(value, str):
        return [value] if value.strip() else []
    if isinstance(value, list):
        return [item for item in value if isinstance(item, str) and item.strip()]
    return []


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return json.dumps(value)
    return ""


def _in_force(element: dict[str, Any], today: str) -> bool:
    """Whether ``element.period`` holds today, compared at the precision it is written."""
    period = element.get("period")
    if not isinstance(period, dict):
        return True
    end = period.get("end")
    if isinstance(end, str) and end:
        end = end[:10]
        if end < today[: len(end)]:
            return False
    start = period.get("start")
    if isinstance(start, str) and start:
        start = start[:10]
        if start > today[: len(start)]:
            return False
    return True


def _start(element: dict[str, Any]) -> str:
    period = element.get("period")
    start = period.get("start") if isinstance(period, dict) else None
    return start[:10] if isinstance(start, str) else ""


def _best(
    elements: list[dict[str, Any]], ranks: dict[str | None, int], today: str, default: int
) -> dict[str, Any] | None:
    """Current first, then by ``use`` rank, then the latest ``period.start``, then the first."""

    def key(element: dict[str, Any]) -> tuple[bool, int, str]:
        use = element.get("use")
        current = use not in _NEVER_CURRENT and _in_force(element, today)
        return current, -ranks.get(use if isinstance(use, str) else None, default), _start(element)

    return max(elements, key=key) if elements else None


def _verification_status(identifier: dict[str, Any]) -> str | None:
    for extension in _dicts(identifier.get("extension")):
        url = extension.get("url")
        if not isinstance(url, str) or "nhsnumberverificationstatus" not in url.lower():
            continue
        concept = extension.get("valueCodeableConcept")
        for coding in _dicts(concept.get("coding") if isinstance(concept, dict) else None):
            code = coding.get("code")
            if isinstance(code, str):
                return code.strip()
    return None


def _identifier(
    resource: dict[str, Any], systems: frozenset[str], today: str, *, nhs: bool = False
) -> tuple[str, bool]:
    """The chosen identifier value, and whether one was left out for its verification."""
    candidates: list[tuple[bool, bool, int, str]] = []
    untrusted = False
    for index, ident in enumerate(_dicts(resource.get("identifier"))):
        if ident.get("system") not in systems:
            continue
        value = ident.get("value")
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)  # an NHS number written as a JSON number
        if not isinstance(value, str) or not value.strip():
            continue
        status = _verification_status(ident) if nhs and "extension" in ident else None
        if status in UNTRUSTED_NHS_STATUSES:
            untrusted = True
            continue
        current = ident.get("use") != "old" and _in_force(ident, today)
        candidates.append((current, status == _VERIFIED, -index, value))
    if not candidates:
        return "", untrusted
    return max(candidates)[3], False


def _name_parts(name: dict[str, Any]) -> tuple[str, str, str]:
    given = " ".join(_strings(name.get("given")))
    family = " ".join(_strings(name.get("family")))
    text = "" if given or family else " ".join(_strings(name.get("text")))
    return given, family, text


def _has_name(name: dict[str, Any]) -> bool:
    return any(_strings(name.get(part)) for part in ("given", "family", "text"))


def _name(resource: dict[str, Any], today: str) -> tuple[str, str, str]:
    names = _dicts(resource.get("name"))
    if len(names) > 1:  # most patients have one name: nothing to choose
        names = [n for n in names if _has_name(n)]
        best = _best(names, _NAME_USE_RANK, today, _UNKNOWN_USE)
        names = [best] if best is not None else []
    return _name_parts(names[0]) if names else ("", "", "")


def _address(resource: dict[str, Any], today: str) -> dict[str, Any] | None:
    addresses = _dicts(resource.get("address"))
    if len(addresses) > 1:
        addresses = [
            a for a in addresses if _strings(a.get("postalCode")) or _strings(a.get("line"))
        ]
        return _best(addresses, _ADDRESS_USE_RANK, today, _UNKNOWN_USE)
    return addresses[0] if addresses else None


def _path(resource: dict[str, Any], dotted: str) -> str:
    value: Any = resource
    for part in dotted.split("."):
        if isinstance(value, list):
            value = value[0] if value else None
        if not isinstance(value, dict):
            return ""
        value = value.get(part)
    if isinstance(value, list):
        value = value[0] if value else None
    return _text(value)


@dataclass(frozen=True, slots=True)
class _Plan:
    """:class:`FhirFields` resolved once for a whole file."""

    fields: FhirFields
    id_systems: frozenset[str]
    nhs_systems: frozenset[str]
    other_systems: frozenset[str]

    @classmethod
    def of(cls, fields: FhirFields) -> _Plan:
        nhs = {fields.nhs_system} if fields.nhs_system is not None else set()
        if fields.nhs_system == FHIR_NHS_NUMBER_SYSTEM:
            nhs = set(NHS_NUMBER_SYSTEMS)
        return cls(
            fields=fields,
            id_systems=frozenset({fields.id_system} if fields.id_system is not None else ()),
            nhs_systems=frozenset(nhs),
            other_systems=frozenset(
                {fields.other_system} if fields.other_system is not None else ()
            ),
        )


def _values(resource: dict[str, Any], plan: _Plan, today: str) -> tuple[list[str], bool]:
    fields = plan.fields
    if plan.id_systems:
        local_id = _identifier(resource, plan.id_systems, today)[0]
    else:
        local_id = _text(resource.get("id"))
    nhs_number, untrusted = "", False
    if plan.nhs_systems:
        nhs_number, untrusted = _identifier(resource, plan.nhs_systems, today, nhs=True)
    given, family, text = _name(resource, today) if fields.names else ("", "", "")
    postcode = line = locality = region = ""
    if fields.postcode or fields.address_line or fields.locality or fields.region:
        address = _address(resource, today)
        if address is not None:
            postcode = _text(address.get("postalCode")) if fields.postcode else ""
            lines = _strings(address.get("line")) if fields.address_line else []
            line = lines[0] if lines else ""
            locality = _text(address.get("city")) if fields.locality else ""
            if fields.region:
                region = _text(address.get("state")) or _text(address.get("district"))
    other = _identifier(resource, plan.other_systems, today)[0] if plan.other_systems else ""
    values = [
        local_id,
        nhs_number,
        given,
        "",
        family,
        text,
        _text(resource.get("birthDate")) if fields.birth_date else "",
        _text(resource.get("gender")) if fields.gender else "",
        postcode,
        line,
        other,
        *(_path(resource, p) for p in fields.payload),
        locality,
        region,
    ]
    return values, untrusted


def patient_values(
    resource: dict[str, Any], fields: FhirFields, *, today: date | None = None
) -> list[str]:
    """The values of one Patient in the pipeline's slot order (rules in the module doc).

    Args:
        resource: a parsed ``Patient`` resource.
        fields: what to take.
        today: the day against which ``period`` elements are judged (default: today).
        on_unverified: called with the position of each resource whose NHS number was
            left out for its verification status (the quality report counts them).

    Returns:
        ``[local_id, nhs_number, given names, "", family, name text, birthDate, gender,
        postalCode, address line, other id, *payload, locality, region]``; ``""`` where
        absent.
    """
    return _values(resource, _Plan.of(fields), (today or date.today()).isoformat())[0]


def _replaced(resource: dict[str, Any]) -> bool:
    return any(link.get("type") == "replaced-by" for link in _dicts(resource.get("link")))


class _Utf8Source:
    """Bytes for ijson from a text stream: any encoding in, UTF-8 out.

    Bytes that were not valid in the file's encoding (kept as lone surrogates by
    :func:`open_text`) become U+FFFD, so that the entry holding them is reported rather
    than the parser stopping.
    """

    __slots__ = ("_text",)

    def __init__(self, text: TextIO) -> None:
        self._text = text

    def read(self, size: int) -> bytes:
        chunk = self._text.read(size)
        try:
            return chunk.encode("utf-8")
        except UnicodeEncodeError:
            return _SURROGATE.sub("\ufffd", chunk).encode("utf-8")


def _first_value(text: TextIO) -> tuple[str | None, bool]:
    """The first top-level value's ``resourceType`` and whether the value is whole JSON.

    A Bundle is recognised as soon as its ``resourceType`` is seen (normally its first
    key), so a large Bundle is not read twice.
    """
    resource_type: str | None = None
    try:
        events = ijson.parse(_Utf8Source(text), buf_size=_PRESCAN, multiple_values=True)
        for prefix, event, value in events:
            if prefix == "resourceType" and event == "string":
                resource_type = str(value)
                if value == "Bundle":
                    return value, False
            elif prefix == "" and event not in ("start_map", "start_array", "map_key"):
                return resource_type, True  # the first value has ended
    except (ijson.JSONError, UnicodeError):
        pass
    return resource_type, False


def _resource_line(line: str) -> bool:
    """Whether one line is a whole JSON object with a ``resourceType``."""
    try:
        value = json.loads(line)
    except (json.JSONDecodeError, UnicodeError):
        return False
    return isinstance(value, dict) and isinstance(value.get("resourceType"), str)


def _first_line(text: TextIO) -> str:
    line = text.readline(_HEAD_LIMIT)
    while line and not line.strip():
        line = text.readline(_HEAD_LIMIT)
    return line


def _blank(text: TextIO) -> bool:
    while chunk := text.read(_PRESCAN):
        if not chunk.isspace():
            return False
    return True


def _kind(path: Path, text: TextIO) -> _Kind:
    """Tell NDJSON, a Bundle and pretty-printed resources apart from the start of the file."""
    if _blank(text):
        raise InputError(f"{path}: the file is empty")
    text.seek(0)
    resource_type, whole = _first_value(text)
    if resource_type == "Bundle":
        return "bundle"
    text.seek(0)
    if isinstance(resource_type, str) and whole:
        # One resource a line, or a resource written over several lines.
        return "ndjson" if _resource_line(_first_line(text)) else "resources"
    # NDJSON whose first line is broken: the next lines decide.
    _first_line(text)
    for _ in range(_LOOKAHEAD_LINES):
        line = text.readline(_HEAD_LIMIT)
        if not line:
            break
        if line.strip() and _resource_line(line):
            return "ndjson"
    raise InputError(f"{path}: neither FHIR NDJSON nor a Bundle")


def _ndjson(text: TextIO, sink: ProblemSink) -> _Resources:
    for number, line in enumerate(text, start=1):
        if not line.strip():
            continue
        try:
            resource = json.loads(line)
        except (json.JSONDecodeError, UnicodeError):
            sink(number, None, "not a JSON object")
            continue
        if not isinstance(resource, dict):
            sink(number, None, "not a JSON object")
            continue
        yield number, resource


def _bundle(path: Path, text: TextIO, sink: ProblemSink, skip: Callable[[int], None]) -> _Resources:
    number = 0
    entries = ijson.items(
        _Utf8Source(text), "entry.item", buf_size=_ITEMS, use_float=True, multiple_values=True
    )
    try:
        for number, entry in enumerate(entries, start=1):
            if not isinstance(entry, dict):
                sink(number, None, "bundle entry is not an object")
                continue
            resource = entry.get("resource")
            if resource is None and ("request" in entry or "response" in entry):
                skip(number)  # a deletion or a response without a body
                continue
            if resource is None:
                sink(number, None, "bundle entry without a resource")
                continue
            yield number, resource
    except (ijson.JSONError, UnicodeError):
        raise InputError(
            f"{path}: the Bundle is not valid JSON after entry {number} (a cut-off or "
            f"corrupted file): nothing after it can be read"
        ) from None
    if number == 0 and _entry_not_a_list(text):
        raise InputError(f"{path}: Bundle.entry is not a list of entries: nothing can be read")


def _entry_not_a_list(text: TextIO) -> bool:
    """Whether the Bundle's ``entry`` is something other than a list (read again, streaming)."""
    text.seek(0)
    try:
        events = ijson.parse(_Utf8Source(text), buf_size=_ITEMS, multiple_values=True)
        for prefix, event, _ in events:
            if prefix == "entry" and event != "map_key":
                return bool(event != "start_array")
    except (ijson.JSONError, UnicodeError):
        return False
    return False


def _misnamed(resource: dict[str, Any], resource_type: str) -> bool:
    """Whether a resource's type looks like a misspelt ``Bundle`` or ``Patient``.

    Such a file would otherwise be read as one resource of another type, skipped: no
    rows and no problem. A resource holding ``entry`` that is not a Bundle is one too.
    """
    if resource_type in _CONTAINER_TYPES:
        return False
    if "entry" in resource:
        return True
    return bool(get_close_matches(resource_type.casefold(), _MISSPELT, n=1, cutoff=0.7))


def _top_level(path: Path, text: TextIO) -> _Resources:
    number = 0
    values = ijson.items(
        _Utf8Source(text), "", buf_size=_ITEMS, use_float=True, multiple_values=True
    )
    try:
        for number, value in enumerate(values, start=1):
            yield number, value
    except (ijson.JSONError, UnicodeError):
        raise InputError(
            f"{path}: not valid JSON after resource {number}: nothing after it can be read"
        ) from None


def _undecodable(values: Sequence[str]) -> bool:
    text = "".join(values)
    if text.isascii():
        return False
    return "\ufffd" in text or has_undecodable(values)


def read_fhir(
    path: Path,
    fields: FhirFields,
    *,
    encoding: str = "utf-8",
    on_problem: ProblemSink | None = None,
    on_skip: Callable[[int], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
    on_position: Callable[[Position], None] | None = None,
    today: date | None = None,
    on_unverified: Callable[[int], None] | None = None,
) -> Generator[tuple[int, Sequence[str]], None, None]:
    """Yield ``(position, values)`` for each Patient, values as :func:`patient_values`.

    The position is the NDJSON line number, the Bundle entry number, or the number of a
    pretty-printed resource (all from 1); the module doc has every rule.

    Args:
        path: the NDJSON, Bundle or resource file.
        fields: what to take from each Patient.
        encoding: the file's encoding (a byte-order mark wins).
        on_problem: called with (position, None, reason) for each entry not used.
        on_skip: called with the position of each resource that is not a record of the
            extract (another resource type, a merged duplicate, a deletion).
        on_progress: called now and then with the bytes read so far.
        on_position: called once, before any position is passed on, with what the
            positions count: ``"line"`` (NDJSON), ``"entry"`` (Bundle) or ``"resource"``.
        today: the day against which ``period`` elements are judged (default: today).

    Raises:
        InputError: unknown encoding, unreadable or empty file, neither NDJSON nor a
            Bundle, or JSON that breaks mid-Bundle.
    """
    sink: ProblemSink = on_problem or (lambda line, column, reason: None)
    skip: Callable[[int], None] = on_skip or (lambda line: None)
    day = (today or date.today()).isoformat()
    plan = _Plan.of(fields)
    undecodable = f"bytes not valid in {encoding}"  # FHIR JSON is UTF-8: no other to try
    with open_text(path, encoding) as text:
        kind = _kind(path, text)
        text.seek(0)
        if on_position is not None:
            on_position(_POSITIONS[kind])
        resources: _Resources
        if kind == "ndjson":
            resources = _ndjson(text, sink)
        elif kind == "bundle":
            resources = _bundle(path, text, sink, skip)
        else:
            resources = _top_level(path, text)
        count = untrusted = 0
        for number, resource in resources:
            if not isinstance(resource, dict):
                sink(number, None, "resource is not an object")
                continue
            resource_type = resource.get("resourceType")
            if not isinstance(resource_type, str):
                sink(number, None, "resource without a resourceType")
                continue
            if resource_type != "Patient" and _misnamed(resource, resource_type):
                sink(number, None, "resourceType is not a FHIR type: a misspelt Bundle or Patient?")
                continue
            if resource_type != "Patient" or ("link" in resource and _replaced(resource)):
                skip(number)
                continue
            values, dropped = _values(resource, plan, day)
            untrusted += dropped
            if dropped and on_unverified is not None:
                on_unverified(number)
            if _undecodable(values):
                sink(number, None, undecodable)
                continue
            if "\x00" in "".join(values):
                sink(number, None, NUL_REASON)
                continue
            yield number, values
            count += 1
            if on_progress is not None and not count & _PROGRESS_EVERY:
                on_progress(bytes_read(text))
        if untrusted:
            logger.info(
                "%s: %d NHS numbers not used: their verification status says the trace "
                "failed or found a conflict",
                path.name,
                untrusted,
            )
        if on_progress is not None:
            on_progress(path.stat().st_size)
