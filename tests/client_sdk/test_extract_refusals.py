"""Extracts that used to lose patients or change tokens silently (issue 19), through the CLI.

Each test drives the installed ``tessera-sdk check`` or ``tokenise`` as a subprocess.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from client_sdk.mapping import parse_mapping
from client_sdk.pipeline import iter_records, record_blocks
from client_sdk.quality import QualityCollector
from keys.batch import BatchReader
from tests.client_sdk.sdk_cli import sdk, tokenise_args
from tests.support.tokenise_world import Org, make_orgs

MAPPING = """
[source]
format = "csv"
encoding = "utf-8"
[record]
id = "PATIENT_ID"
[identifiers]
nhs_number = "NHS_NO"
given_name = "FORENAME"
family_name = "SURNAME"
date_of_birth = { column = "DOB", formats = ["%Y-%m-%d"] }
sex = "SEX"
postcode = "POSTCODE"
"""
HEADER = "PATIENT_ID,FORENAME,SURNAME,DOB,SEX,NHS_NO,POSTCODE"
PEOPLE = [
    ("Alice", "Archer", "1950-01-02", "F", "9434765919", "BA1 1AA"),
    ("Bob", "Baker", "1960-03-04", "M", "9434765870", "BA2 2BB"),
    ("Carol", "Cooper", "1970-05-06", "F", "9434765862", "BA3 3DD"),
    ("David", "Draper", "1980-07-08", "M", "9434765854", "BA4 4EE"),
    ("Emma", "Evans", "1990-09-10", "F", "9434765846", "BA5 5FF"),
    ("Frank", "Fisher", "1951-11-12", "M", "9434765838", "BA6 6GG"),
    ("Grace", "Glover", "1961-12-13", "F", "9434765811", "BA7 7HH"),
    ("Harry", "Hunter", "1971-02-14", "M", "9434765803", "BA8 8JJ"),
    ("Irene", "Ingram", "1981-04-15", "F", "9434765797", "BA9 9LL"),
    ("Jack", "Jones", "1991-06-16", "M", "9434765789", "BA10 0NN"),
]


@pytest.fixture(scope="module")
def org(tmp_path_factory: pytest.TempPathFactory) -> Org:
    return make_orgs(tmp_path_factory.mktemp("orgs"), ["gp"])["gp"]


def _write(tmp_path: Path, rows: list[str], mapping: str = MAPPING) -> tuple[Path, Path]:
    data = tmp_path / "extract.csv"
    data.write_text("\n".join([HEADER, *rows]) + "\n", encoding="utf-8")
    mapping_path = tmp_path / "mapping.toml"
    mapping_path.write_text(mapping)
    return data, mapping_path


def _check_json(data: Path, mapping: Path, tmp_path: Path) -> dict[str, object]:
    report = tmp_path / "report.json"
    result = sdk("check", data, "--mapping", mapping, "--json", report)
    assert result.returncode == 0, result.stderr
    loaded: dict[str, object] = json.loads(report.read_text())
    return loaded


def test_repeated_local_ids_are_rejected_with_the_line_they_repeat(
    org: Org, tmp_path: Path
) -> None:
    # Two merged practice lists: ten people, five ids between them.
    rows = [f"{i % 5 + 1},{','.join(person)}" for i, person in enumerate(PEOPLE)]
    data, mapping = _write(tmp_path, rows)
    report = _check_json(data, mapping, tmp_path)
    assert report["rows_read"] == 10 and report["records_used"] == 5
    assert report["rows_rejected"] == 5
    problems = report["problems"]
    assert isinstance(problems, list)
    assert [(p["line"], p["column"]) for p in problems] == [
        (line, "PATIENT_ID") for line in range(7, 12)
    ]
    assert problems[0]["reason"] == "duplicate local record id: the same as line 2"
    assert problems[4]["reason"] == "duplicate local record id: the same as line 6"
    assert report["grade"] == "Not rated"  # half the rows rejected
    out = tmp_path / "gp.batch"
    result = sdk(*tokenise_args(org, data, mapping, out, dataset="dupes"))
    assert result.returncode == 0, result.stderr
    assert BatchReader(out).manifest.record_count == 5
    assert "5 rows rejected of 10 read" in result.stdout
    assert result.stdout.rstrip().endswith("quality grade: Not rated")


def test_duplicates_are_found_across_blocks_and_workers(org: Org, tmp_path: Path) -> None:
    rows = [f"{i + 1},{','.join(person)}" for i, person in enumerate(PEOPLE)]
    rows.append(f"3,{','.join(PEOPLE[0])}")  # line 12 repeats the id of line 4
    data, mapping = _write(tmp_path, rows)
    out = tmp_path / "gp.batch"
    args = tokenise_args(org, data, mapping, out, dataset="dupes-blocks")
    result = sdk(*args, "--workers", "2", "--chunk-records", "3")
    assert result.returncode == 0, result.stderr
    manifest = BatchReader(out).manifest
    assert manifest.record_count == 10
    reason = "duplicate local record id: the same as line 4"
    assert manifest.quality["problems"] == [{"line": 12, "column": "PATIENT_ID", "reason": reason}]


def test_a_nul_character_in_a_name_rejects_its_row(tmp_path: Path) -> None:
    rows = [f"{i + 1},{','.join(person)}" for i, person in enumerate(PEOPLE)]
    rows[2] = rows[2].replace("Carol", "Car\x00ol")
    data, mapping = _write(tmp_path, rows)
    report = _check_json(data, mapping, tmp_path)
    assert report["rows_rejected"] == 1
    problem = report["problems"][0]  # type: ignore[index]
    assert (problem["line"], problem["column"]) == (4, "FORENAME")
    assert problem["reason"].startswith("NUL character in a value")


def test_cp1252_read_as_utf8_says_which_encoding_to_set(tmp_path: Path) -> None:
    rows = [f"{i + 1},{','.join(person)}" for i, person in enumerate(PEOPLE)]
    rows[1] = rows[1].replace("Bob", "José")
    data, mapping = _write(tmp_path, [])
    data.write_bytes(("\n".join([HEADER, *rows]) + "\n").encode("cp1252"))
    result = sdk("check", data, "--mapping", mapping)
    assert result.returncode == 0, result.stderr
    hint = 'a Windows export? try [source] encoding = "cp1252"'
    assert f"line 3: bytes not valid in utf-8: {hint}" in result.stdout


@pytest.mark.parametrize(
    ("name", "content", "mapping"),
    [
        ("header.csv", HEADER + "\n", MAPPING),
        (
            "outcome.json",
            json.dumps(
                {
                    "resourceType": "OperationOutcome",
                    "issue": [{"severity": "error", "code": "processing"}],
                }
            ),
            '[source]\nformat = "fhir"\n[record]\nid = "id"\n',
        ),
    ],
)
def test_an_extract_without_records_writes_no_batch(
    org: Org, tmp_path: Path, name: str, content: str, mapping: str
) -> None:
    data = tmp_path / name
    data.write_text(content)
    mapping_path = tmp_path / "mapping.toml"
    mapping_path.write_text(mapping)
    out = tmp_path / "empty.batch"
    result = sdk(*tokenise_args(org, data, mapping_path, out, dataset="empty"))
    assert result.returncode == 11
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "no records to tokenise" in lines[0], result.stderr
    assert not out.exists()
    assert not out.with_name(out.name + ".partial").exists()


FHIR_MAPPING = '[source]\nformat = "fhir"\n[record]\nid = "id"\n'
PATIENT = {"resourceType": "Patient", "id": "p1", "name": [{"family": "Smith"}]}


def test_a_misspelt_bundle_is_a_problem_not_a_skipped_resource(tmp_path: Path) -> None:
    data = tmp_path / "bundle.json"
    bundle = {"resourceType": "Bundel", "type": "collection", "entry": [{"resource": PATIENT}]}
    data.write_text(json.dumps(bundle))
    mapping = tmp_path / "mapping.toml"
    mapping.write_text(FHIR_MAPPING)
    report = _check_json(data, mapping, tmp_path)
    assert report["rows_rejected"] == 1 and report["rows_skipped"] == 0
    assert "misspelt Bundle" in report["problems"][0]["reason"]  # type: ignore[index]


def test_a_bundle_whose_entry_is_an_object_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "bundle.json"
    data.write_text(
        json.dumps({"resourceType": "Bundle", "type": "collection", "entry": {"resource": PATIENT}})
    )
    mapping = tmp_path / "mapping.toml"
    mapping.write_text(FHIR_MAPPING)
    result = sdk("check", data, "--mapping", mapping)
    assert result.returncode == 11
    assert "Bundle.entry is not a list" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_long_value_in_an_unmapped_column_is_never_read(tmp_path: Path) -> None:
    mapping = MAPPING
    rows = [f"{i + 1},{','.join(person)},x" for i, person in enumerate(PEOPLE)]
    rows[4] = rows[4][:-1] + '"' + "n" * 1_000_000 + '"'  # a 1 MB free-text note
    data = tmp_path / "extract.csv"
    data.write_text("\n".join([HEADER + ",NOTES", *rows]) + "\n", encoding="utf-8")
    (tmp_path / "mapping.toml").write_text(mapping)
    report = _check_json(data, tmp_path / "mapping.toml", tmp_path)
    assert report["rows_rejected"] == 0 and report["records_used"] == 10


def _names(mapping: str, header: str, row: str, tmp_path: Path) -> tuple[int, int]:
    """(given-name placeholders, family-name placeholders) of a one-row extract."""
    data = tmp_path / "one.csv"
    data.write_text(f"{header}\n{row}\n", encoding="utf-8")
    collector = QualityCollector()
    list(iter_records(data, parse_mapping(_toml(mapping)), report=collector))
    report = collector.report()
    return report.field("given_name").placeholder, report.field("family_name").placeholder


def _toml(text: str) -> dict[str, object]:
    import tomllib

    return tomllib.loads(text)


_NAME_LAYOUTS = [
    (
        '[source]\nformat = "csv"\n[record]\nid = "ID"\n[identifiers]\n'
        'full_name = { column = "NAME", layout = "GIVEN FAMILY" }\n',
        "ID,NAME",
        "1,John Doe",
    ),
    (
        '[source]\nformat = "csv"\n[record]\nid = "ID"\n[identifiers]\n'
        'full_name = { column = "NAME", layout = "FAMILY, GIVEN" }\n',
        "ID,NAME",
        '1,"DOE, John"',
    ),
    (
        '[source]\nformat = "csv"\n[record]\nid = "ID"\n[identifiers]\n'
        'given_name = "GIVEN"\nfamily_name = "FAMILY"\n',
        "ID,GIVEN,FAMILY",
        "1,John,Doe",
    ),
    (
        '[source]\nformat = "csv"\n[record]\nid = "ID"\n[identifiers]\n'
        'given_name = "GIVEN"\nfamily_name = "FAMILY"\n',
        "ID,GIVEN,FAMILY",
        "1,JANE,DOE",
    ),
]


@pytest.mark.parametrize(("mapping", "header", "row"), _NAME_LAYOUTS)
def test_john_doe_is_a_placeholder_in_every_layout(
    mapping: str, header: str, row: str, tmp_path: Path
) -> None:
    assert _names(mapping, header, row, tmp_path) == (1, 1)


def test_a_doe_with_another_given_name_or_a_middle_name_is_a_person(tmp_path: Path) -> None:
    mapping, header, _ = _NAME_LAYOUTS[2]
    assert _names(mapping, header, "1,Mary,Doe", tmp_path) == (0, 0)
    assert _names(mapping, header, "1,John Paul,Doe", tmp_path) == (0, 0)


@settings(max_examples=40, deadline=None)
@given(ids=st.lists(st.integers(min_value=1, max_value=8), min_size=1, max_size=30))
def test_each_local_id_is_used_once_and_every_repeat_names_its_first_line(
    ids: list[int],
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        data = Path(directory) / "x.csv"
        data.write_text("ID,FAMILY\n" + "".join(f"{i},Smith\n" for i in ids))
        mapping = parse_mapping(_toml(ID_ONLY))
        collector = QualityCollector()
        for_blocks = QualityCollector()
        used = [r.local_id for r in iter_records(data, mapping, report=collector)]
        blocks = record_blocks(data, mapping, report=for_blocks, size=3)
        in_blocks = [line for block in blocks.blocks for line in block.lines]
    assert used == [str(i) for i in dict.fromkeys(ids)]
    first: dict[int, int] = {}
    expected: list[tuple[int, str]] = []
    for line, i in enumerate(ids, start=2):
        if first.setdefault(i, line) != line:
            expected.append((line, f"duplicate local record id: the same as line {first[i]}"))
    for report in (collector, for_blocks):
        problems = report.report().problems
        assert [(p.line, p.reason) for p in problems] == expected
    assert in_blocks == [line for line, i in enumerate(ids, start=2) if first[i] == line]


ID_ONLY = '[source]\nformat = "csv"\n[record]\nid = "ID"\n[identifiers]\nfamily_name = "FAMILY"\n'
