"""The pipeline: the same people from different exports normalise to the same records."""

from __future__ import annotations

from collections.abc import Generator
from datetime import date
from pathlib import Path

import pytest

from client_sdk.errors import InputError
from client_sdk.mapping import load_mapping, parse_mapping
from client_sdk.pipeline import iter_records
from client_sdk.quality import QualityCollector
from client_sdk.record import NormalisedRecord

DATA = Path(__file__).parent.parent / "data"
TODAY = date(2026, 11, 24)


def _records(extract, mapping, collector=None):
    return list(
        iter_records(DATA / extract, load_mapping(DATA / mapping), report=collector, today=TODAY)
    )


@pytest.fixture(scope="module")
def conventions():
    return {
        "hospital cp1252, combined name": _records("hospital_cp1252.csv", "hospital_cp1252.toml"),
        "GP UTF-8 with BOM, split names": _records("gp_utf8_bom.csv", "gp_utf8_bom.toml"),
        "FHIR NDJSON": _records("patients.ndjson", "patients_fhir.toml"),
        "FHIR Bundle": _records("patients_bundle.json", "patients_fhir.toml"),
    }


def test_same_people_in_four_conventions_normalise_equal(conventions):
    comparable = {
        name: [record._replace(line=0) for record in records]
        for name, records in conventions.items()
    }
    first = next(iter(comparable.values()))
    assert len(first) == 7
    for name, records in comparable.items():
        assert records == first, name


def test_expected_canonical_values(conventions):
    records = {r.local_id: r for r in conventions["hospital cp1252, combined name"]}
    assert records["H0001"] == NormalisedRecord(
        line=2,
        local_id="H0001",
        nhs_number="9990079196",
        given_name="SEAN",
        given_name_key="SEAN",
        middle_names=None,
        family_name="OBRIEN",
        date_of_birth="1980-02-01",
        sex="M",
        postcode="BA1 1AA",
        payload=("3",),
    )
    assert records["H0002"].family_name == "SMITH JONES"
    assert records["H0002"].given_name == "ZOE"
    assert records["H0003"].family_name == "MCDONALD"
    assert records["H0004"].given_name == "LUCJA"
    assert records["H0005"].family_name == "DELACRUZ"
    assert (records["H0005"].given_name, records["H0005"].middle_names) == ("MARY", "ANN")
    assert records["H0006"].family_name == "WEISS"
    assert records["H0007"].given_name_key == "WILLIAM"
    assert records["H0007"].middle_names == "HENRY"


def test_messy_extract_reports_and_goes_on():
    collector = QualityCollector()
    records = _records("messy.csv", "messy.toml", collector)
    assert [r.local_id for r in records] == [
        "L001",
        "L002",
        "L003",
        "L007",
        "L008",
        "L009",
        "L010",
    ]
    placeholder, invalid, future = records[1], records[2], records[5]
    assert placeholder == NormalisedRecord(line=3, local_id="L002", payload=("placeholders",))
    assert (invalid.nhs_number, invalid.date_of_birth, invalid.postcode) == (None, None, None)
    assert invalid.family_name == "CHECK"
    assert future.date_of_birth is None and future.given_name is None
    report = collector.report()
    assert [(p.line, p.reason.split(":")[0]) for p in report.problems] == [
        (5, "no local record id"),
        (6, "malformed row"),
        (7, "malformed row"),
    ]
    assert report.problems[0].column == "LOCAL_ID"
    assert report.rows_read == 10 and report.records_used == 7 and report.rows_rejected == 3
    assert report.duplicate_nhs_numbers == 1
    nhs = report.field("nhs_number")
    assert (nhs.valid, nhs.missing, nhs.invalid, nhs.placeholder) == (4, 1, 1, 1)
    assert (4, "DOB", "invalid date_of_birth") in {
        (p.line, p.column, p.reason) for p in report.value_problems
    }


def test_no_value_from_the_extract_in_the_report():
    collector = QualityCollector()
    _records("messy.csv", "messy.toml", collector)
    text = collector.report().model_dump_json()
    raw = (DATA / "messy.csv").read_text(encoding="utf-8")
    for line in raw.splitlines()[1:]:
        for value in line.split(",")[1:7]:  # the identifiers
            value = value.strip('"')
            if len(value) >= 3:
                assert value not in text, value
                assert value.replace(" ", "") not in text, value


def test_unknown_encoding_and_missing_columns(tmp_path):
    mapping = load_mapping(DATA / "hospital_cp1252.toml")
    wrong = parse_mapping(
        mapping.model_dump() | {"source": {"format": "csv", "encoding": "cp9999"}}
    )
    with pytest.raises(InputError, match="unknown encoding"):
        list(iter_records(DATA / "hospital_cp1252.csv", wrong))
    with pytest.raises(InputError, match="none of the mapped columns"):
        list(iter_records(DATA / "gp_utf8_bom.csv", mapping))


def test_full_name_without_parts_in_fhir(tmp_path):
    path = tmp_path / "p.ndjson"
    path.write_text(
        '{"resourceType": "Patient", "id": "x", "name": [{"text": "Dr Maria de la Cruz"}]}\n',
        encoding="utf-8",
    )
    mapping = load_mapping(DATA / "patients_fhir.toml")
    (record,) = iter_records(path, mapping)
    assert (record.given_name, record.family_name) == ("MARIA", "DELACRUZ")


def test_streaming_is_lazy(tmp_path):
    path = tmp_path / "big.csv"
    with path.open("w", encoding="utf-8") as out:
        out.write("ID,NHS\n")
        for i in range(50_000):
            out.write(f"{i},9990079196\n")
    mapping = parse_mapping(
        {"source": {"format": "csv"}, "record": {"id": "ID"}, "identifiers": {"nhs_number": "NHS"}}
    )
    records = iter_records(path, mapping)
    first = next(records)
    assert first.local_id == "0"
    assert isinstance(records, Generator)
    records.close()


def test_progress_is_silent_off_a_terminal(capsys):
    mapping = load_mapping(DATA / "gp_utf8_bom.toml")
    records = list(iter_records(DATA / "gp_utf8_bom.csv", mapping, progress=True))
    assert len(records) == 7
    assert capsys.readouterr().err == ""
