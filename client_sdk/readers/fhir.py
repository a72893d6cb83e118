"""Read FHIR R4 ``Patient`` resources, as NDJSON (one resource a line) or as a Bundle.

NDJSON streams one line at a time (FHIR Bulk Data exports are NDJSON). A Bundle is one JSON
document and is read whole; use NDJSON for very large extracts. Resources that are not
``Patient`` are skipped and counted; a line that is not JSON is reported and the
reading goes on.

From each Patient: the NHS number (``identifier`` with the NHS number system), the name
(``use = official`` first, then ``usual``, then any name that is not ``old`` or ``maiden``):
all ``given`` names and ``family``, or ``text`` when the parts are absent; ``birthDate``;
``gender``; the home address (``use = home`` without an ended ``period`` first, then the
first address): ``postalCode`` and the first ``line``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from client_sdk.errors import InputError
from client_sdk.readers.csv import ProblemSink, has_undecodable, open_text

__all__ = ["FhirFields", "patient_values", "read_fhir"]

_NAME_USE_ORDER = {"official": 0, "usual": 1, None: 2, "temp": 3, "nickname": 4, "anonymous": 5}
_SKIPPED_NAME_USES = {"old", "maiden"}


@dataclass(frozen=True, slots=True)
class FhirFields:
    """What to take from each Patient.

    Attributes:
        id_system: identifier system of the local id, or ``None`` for the resource id.
        nhs_system: identifier system of the NHS number, or ``None`` to skip it.
        other_system: identifier system of the other id, or ``None`` to skip it.
        names: read the name; birth_date, gender, postcode, address_line likewise.
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


def _identifier(resource: dict[str, Any], system: str | None) -> str:
    for ident in resource.get("identifier") or ():
        if isinstance(ident, dict) and ident.get("system") == system:
            value = ident.get("value")
            return value if isinstance(value, str) else ""
    return ""


def _best_name(resource: dict[str, Any]) -> dict[str, Any] | None:
    names = [n for n in resource.get("name") or () if isinstance(n, dict)]
    names = [n for n in names if n.get("use") not in _SKIPPED_NAME_USES] or names
    if not names:
        return None
    return min(names, key=lambda n: _NAME_USE_ORDER.get(n.get("use"), 6))


def _home_address(resource: dict[str, Any]) -> dict[str, Any] | None:
    addresses = [a for a in resource.get("address") or () if isinstance(a, dict)]
    current = [a for a in addresses if not (a.get("period") or {}).get("end")]
    for address in current:
        if address.get("use") == "home":
            return address
    chosen = current or addresses
    return chosen[0] if chosen else None


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return json.dumps(value)
    return ""


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


def patient_values(resource: dict[str, Any], fields: FhirFields) -> list[str]:
    """The values of one Patient in the pipeline's slot order.

    Args:
        resource: a parsed ``Patient`` resource.
        fields: what to take.

    Returns:
        ``[local_id, nhs_number, given names, "", family, name text, birthDate, gender,
        postalCode, address line, other id, *payload]``; ``""`` where absent.
    """
    if fields.id_system is None:
        local_id = _text(resource.get("id"))
    else:
        local_id = _identifier(resource, fields.id_system)
    given = family = text = ""
    if fields.names:
        name = _best_name(resource)
        if name is not None:
            given = " ".join(g for g in name.get("given") or () if isinstance(g, str))
            family = _text(name.get("family"))
            if not given and not family:
                text = _text(name.get("text"))
    postcode = line = ""
    if fields.postcode or fields.address_line:
        address = _home_address(resource)
        if address is not None:
            postcode = _text(address.get("postalCode")) if fields.postcode else ""
            lines = address.get("line") or ()
            line = _text(lines[0]) if fields.address_line and lines else ""
    return [
        local_id,
        _identifier(resource, fields.nhs_system) if fields.nhs_system else "",
        given,
        "",
        family,
        text,
        _text(resource.get("birthDate")) if fields.birth_date else "",
        _text(resource.get("gender")) if fields.gender else "",
        postcode,
        line,
        _identifier(resource, fields.other_system) if fields.other_system else "",
        *(_path(resource, p) for p in fields.payload),
    ]


def _ndjson(
    path: Path, text: Iterator[str], sink: ProblemSink
) -> Iterator[tuple[int, dict[str, Any]]]:
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


def _bundle(path: Path, document: Any, sink: ProblemSink) -> Iterator[tuple[int, dict[str, Any]]]:
    if not isinstance(document, dict) or document.get("resourceType") != "Bundle":
        raise InputError(f"{path}: neither FHIR NDJSON nor a Bundle")
    for number, entry in enumerate(document.get("entry") or (), start=1):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict):
            sink(number, None, "bundle entry without a resource")
            continue
        yield number, resource


def read_fhir(
    path: Path,
    fields: FhirFields,
    *,
    encoding: str = "utf-8",
    on_problem: ProblemSink | None = None,
    on_skip: Callable[[int], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> Iterator[tuple[int, Sequence[str]]]:
    """Yield ``(position, values)`` for each Patient, values as :func:`patient_values`.

    The position is the NDJSON line number or the Bundle entry number (from 1). Other
    resource types go to ``on_skip`` (a bulk export mixes them; they are not errors).

    Raises:
        InputError: unknown encoding, unreadable file, or neither NDJSON nor a Bundle.
    """
    sink: ProblemSink = on_problem or (lambda line, column, reason: None)
    with open_text(path, encoding) as text:
        first = ""
        for first in text:
            if first.strip():
                break
        if not first.strip():
            raise InputError(f"{path}: the file is empty")
        try:
            head: Any = json.loads(first)
        except json.JSONDecodeError:
            head = None
        resources: Iterator[tuple[int, dict[str, Any]]]
        if isinstance(head, dict) and head.get("resourceType") != "Bundle":
            text.seek(0)
            resources = _ndjson(path, text, sink)
        else:
            text.seek(0)
            try:
                document = json.loads(text.read())
            except (json.JSONDecodeError, UnicodeError):
                raise InputError(f"{path}: neither FHIR NDJSON nor a Bundle") from None
            resources = _bundle(path, document, sink)
        count = 0
        for number, resource in resources:
            if resource.get("resourceType") != "Patient":
                if on_skip is not None:
                    on_skip(number)
                continue
            values = patient_values(resource, fields)
            if has_undecodable(values):
                sink(number, None, f"bytes not valid in {encoding}")
                continue
            yield number, values
            count += 1
            if on_progress is not None and not count & 0x3FFF:
                on_progress(text.buffer.tell())
        if on_progress is not None:
            on_progress(path.stat().st_size)
