"""Readers: encodings, BOMs, delimiters, quoting, malformed rows, FHIR NDJSON and Bundles."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from client_sdk.errors import InputError
from client_sdk.mapping import FHIR_NHS_NUMBER_SYSTEM
from client_sdk.readers.csv import read_csv
from client_sdk.readers.fhir import FhirFields, patient_values, read_fhir

DATA = Path(__file__).parent.parent / "data"


def _collect(path, columns, **kwargs):
    problems = []
    rows = list(read_csv(path, columns, on_problem=lambda *p: problems.append(p), **kwargs))
    return rows, problems


@pytest.mark.parametrize(
    ("encoding", "prefix"),
    [("utf-8", b""), ("utf-8", b"\xef\xbb\xbf"), ("cp1252", b""), ("cp1252", b"\xef\xbb\xbf")],
)
def test_encodings_and_bom(tmp_path, encoding, prefix):
    codec = "utf-8" if prefix else encoding
    path = tmp_path / "x.csv"
    path.write_bytes(prefix + "ID,NAME\r\n1,Zoë Weiß\r\n".encode(codec))
    rows, problems = _collect(path, ["ID", "NAME"], encoding=encoding)
    assert rows == [(2, ("1", "Zoë Weiß"))]
    assert problems == []


def test_utf16_bom_is_honoured(tmp_path):
    path = tmp_path / "x.csv"
    path.write_bytes("ID\tNAME\r\n1\tZoë\r\n".encode("utf-16"))
    rows, _ = _collect(path, ["ID", "NAME"], encoding="cp1252", delimiter="\t")
    assert rows == [(2, ("1", "Zoë"))]


def test_unknown_encoding_is_an_input_error(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("ID\n1\n", encoding="utf-8")
    with pytest.raises(InputError, match="unknown encoding 'klingon'"):
        list(read_csv(path, ["ID"], encoding="klingon"))


def test_columns_by_name_with_quoting_and_line_breaks(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text(
        'Name ;" Id ";Address\n"SMITH; John";7;"1 High St\n(flat 2)"\n"O""BRIEN";8;x\n',
        encoding="utf-8",
    )
    rows, problems = _collect(path, ["id", "NAME", "Address"], delimiter=";")
    assert rows == [(2, ("7", "SMITH; John", "1 High St\n(flat 2)")), (4, ("8", 'O"BRIEN', "x"))]
    assert problems == []


def test_malformed_rows_are_reported_and_reading_goes_on(tmp_path):
    path = tmp_path / "x.csv"
    path.write_bytes(
        b"ID,A,B,C\n"
        b"1,a,b,c\n"
        b"2,too,few\n"
        b"\n"
        b'3,"unbalanced,b,c\n'
        b"4,a,b,c\n"
        b"5,a,b,c,extra\n"
        b"6,a,b,c,,\n"  # trailing empty fields are tolerated
        b"7,\xff,b,c\n"  # not UTF-8 in a mapped column (other columns are never read)
        b"8,a,b,c\n"
    )
    rows, problems = _collect(path, ["ID", "A"])
    assert [values[0] for _, values in rows] == ["1", "4", "6", "8"]
    assert [line for line, _ in rows] == [2, 6, 8, 10]
    assert [(line, reason.split(":")[0]) for line, _, reason in problems] == [
        (3, "malformed row"),
        (5, "malformed row"),
        (7, "malformed row"),
        (9, "bytes not valid in utf-8"),
    ]


def test_missing_columns(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("ID;NAME\n1;x\n", encoding="utf-8")
    with pytest.raises(InputError, match="none of the mapped columns"):
        list(read_csv(path, ["ID", "NAME"]))  # wrong delimiter: one column "ID;NAME"
    with pytest.raises(InputError, match="not in the header: 'DOB'"):
        list(read_csv(path, ["ID", "DOB"], delimiter=";"))


def test_a_mapped_column_twice_in_the_header_is_ambiguous(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("ID,NAME,NAME,OTHER,OTHER\n1,a,b,c,d\n", encoding="utf-8")
    with pytest.raises(InputError, match="appear twice in the header: 'NAME'"):
        list(read_csv(path, ["ID", "NAME"]))
    assert len(list(read_csv(path, ["ID"]))) == 1  # unmapped duplicates do not matter


def test_empty_file(tmp_path):
    path = tmp_path / "x.csv"
    path.write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        list(read_csv(path, ["ID"]))


_FIELDS = FhirFields(
    id_system=None,
    nhs_system=FHIR_NHS_NUMBER_SYSTEM,
    other_system=None,
    names=True,
    birth_date=True,
    gender=True,
    postcode=True,
    address_line=True,
    payload=("meta.tag.code", "maritalStatus.coding.code", "missing.path"),
)


def test_patient_values_prefer_the_official_name_and_current_home_address():
    patient = {
        "resourceType": "Patient",
        "id": "p1",
        "identifier": [{"system": FHIR_NHS_NUMBER_SYSTEM, "value": "9990079196"}],
        "name": [
            {"use": "maiden", "family": "Old", "given": ["A"]},
            {"use": "usual", "family": "Usual", "given": ["Bill"]},
            {"use": "official", "family": "Smith", "given": ["William", "Henry"]},
        ],
        "birthDate": "1980-02-01",
        "gender": "male",
        "address": [
            {"use": "home", "postalCode": "OLD 1AA", "period": {"end": "2020-01-01"}},
            {"use": "work", "postalCode": "W1A 0AX", "line": ["Work"]},
            {"use": "home", "postalCode": "BA1 1AA", "line": ["1 High St", "Flat 2"]},
        ],
        "meta": {"tag": [{"code": "3"}]},
        "maritalStatus": {"coding": [{"code": "M"}]},
    }
    assert patient_values(patient, _FIELDS) == [
        "p1",
        "9990079196",
        "William Henry",
        "",
        "Smith",
        "",
        "1980-02-01",
        "male",
        "BA1 1AA",
        "1 High St",
        "",
        "3",
        "M",
        "",
        "",  # locality and region: not asked for
        "",
    ]


def test_name_text_is_used_when_parts_are_absent():
    values = patient_values({"id": "p", "name": [{"text": "Jane Doe-Smith"}]}, _FIELDS)
    assert values[2:6] == ["", "", "", "Jane Doe-Smith"]


def test_ndjson_and_bundle_give_the_same_values():
    ndjson = list(read_fhir(DATA / "patients.ndjson", _FIELDS))
    bundle = list(read_fhir(DATA / "patients_bundle.json", _FIELDS))
    assert len(ndjson) == len(bundle) == 7
    assert [v for _, v in ndjson] == [v for _, v in bundle]


def test_ndjson_bad_lines_and_other_resources(tmp_path):
    path = tmp_path / "x.ndjson"
    lines = [
        json.dumps({"resourceType": "Patient", "id": "a"}),
        "{not json",
        json.dumps({"resourceType": "Observation", "id": "o"}),
        "[1, 2]",
        "",
        json.dumps({"resourceType": "Patient", "id": "b"}),
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    problems: list[Any] = []
    skipped: list[object] = []
    rows = list(
        read_fhir(path, _FIELDS, on_problem=lambda *p: problems.append(p), on_skip=skipped.append)
    )
    assert [(line, values[0]) for line, values in rows] == [(1, "a"), (6, "b")]
    assert [p[0] for p in problems] == [2, 4]
    assert skipped == [3]


def test_neither_ndjson_nor_bundle(tmp_path):
    path = tmp_path / "x.json"
    path.write_text('{"resourceType": "Patient",\n "id": 1', encoding="utf-8")
    with pytest.raises(InputError, match="neither FHIR NDJSON nor a Bundle"):
        list(read_fhir(path, _FIELDS))


def test_fhir_bytes_not_valid_in_the_encoding(tmp_path):
    path = tmp_path / "x.ndjson"
    path.write_bytes(
        b'{"resourceType": "Patient", "id": "a", "name": [{"family": "M\xfcller"}]}\n'
        b'{"resourceType": "Patient", "id": "b", "name": [{"family": "Smith"}]}\n'
    )
    problems = []
    rows = list(read_fhir(path, _FIELDS, on_problem=lambda *p: problems.append(p)))
    assert [values[0] for _, values in rows] == ["b"]
    assert problems == [(1, None, "bytes not valid in utf-8")]


def test_utf8_file_mapped_as_cp1252_is_refused(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("ID,NAME\n1,Zoë Weiß\n", encoding="utf-8")
    with pytest.raises(InputError, match="the file is UTF-8 but the mapping says 'cp1252'"):
        list(read_csv(path, ["ID", "NAME"], encoding="cp1252"))
    plain = tmp_path / "plain.csv"
    plain.write_text("ID,NAME\n1,Zoe\n", encoding="utf-8")
    assert len(list(read_csv(plain, ["ID", "NAME"], encoding="cp1252"))) == 1
