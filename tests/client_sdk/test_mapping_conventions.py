"""Mappings for exports that split or repeat fields: several columns, date parts, postcodes.

Every extract is built in ``tmp_path`` at test time. The same people written one column per
field and in the split conventions must give the same normalised records (and so the same
tokens); every form is checked through the pipeline, the block path the tokenising
workers use, and the mapping check.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from client_sdk.cli import cli
from client_sdk.errors import InputError, MappingError
from client_sdk.mapping import parse_mapping
from client_sdk.normalise.dates import DateParser
from client_sdk.normalise.defect import Defect
from client_sdk.normalise.text import check_address_lines
from client_sdk.pipeline import iter_records, record_blocks
from client_sdk.quality import QualityCollector
from client_sdk.readers.columns import (
    SEPARATOR,
    find_postcode,
    name_text,
)
from client_sdk.record import NormalisedRecord
from client_sdk.tokenise_batch import tokenise_records
from keys.chunk import decode_chunk
from keys.cliutil import run_cli
from tests.support.tokenise_world import fixed_params

TODAY = date(2026, 11, 24)
MISSING, INVALID, PLACEHOLDER = Defect.MISSING, Defect.INVALID, Defect.PLACEHOLDER


def _write(tmp_path: Path, header: list[str], rows: list[list[str]], name: str = "x.csv") -> Path:
    path = tmp_path / name
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _mapping(identifiers: dict[str, object], **extra: object) -> dict[str, object]:
    source = {"format": "csv", **extra.pop("source", {})}  # type: ignore[dict-item]
    return {"source": source, "record": {"id": "ID"}, "identifiers": identifiers, **extra}


def _records(path: Path, mapping: Mapping[str, Any]) -> list[NormalisedRecord]:
    return list(iter_records(path, parse_mapping(dict(mapping)), today=TODAY))


def _fields(record: NormalisedRecord) -> tuple[object, ...]:
    return tuple(record)[2:]  # everything but the line and the local id


def _problems(identifiers: dict[str, object], **extra: object) -> str:
    with pytest.raises(MappingError) as caught:
        parse_mapping(_mapping(identifiers, **extra))
    return str(caught.value)


# --- the mapping ---------------------------------------------------------------------------


def test_every_new_form_loads_and_names_its_columns():
    mapping = parse_mapping(
        _mapping(
            {
                "given_name": ["FORENAME1", "FORENAME2"],
                "middle_names": ["MID1", "MID2"],
                "family_name": ["SURNAME"],
                "date_of_birth": {"day": "DOB_DAY", "month": "DOB_MONTH", "year": "DOB_YEAR"},
                "postcode": ["PC_OUT", "PC_IN"],
                "address_line": ["ADDR1", "ADDR2", "ADDR3"],
            }
        )
    )
    assert mapping.columns_of("given_name") == ["FORENAME1", "FORENAME2"]
    assert mapping.column_of("given_name") == "FORENAME1 + FORENAME2"
    assert mapping.column_of("family_name") == "SURNAME"
    assert mapping.columns_of("date_of_birth") == ["DOB_DAY", "DOB_MONTH", "DOB_YEAR"]
    assert mapping.joins_columns("date_of_birth") and mapping.joins_columns("postcode")
    assert not mapping.joins_columns("family_name")  # a list of one is that column
    found = parse_mapping(
        _mapping({"address_line": "ADDRESS", "postcode": {"column": "ADDRESS", "find": True}})
    )
    assert found.finds_postcode and found.columns_of("postcode") == ["ADDRESS"]


def test_every_problem_of_the_new_forms_is_listed_at_once():
    message = _problems(
        {
            "given_name": [],
            "date_of_birth": {"day": "D", "month": "M"},
            "postcode": ["PC_OUT", 3],
            "sex": ["SEX", "GENDER"],
        }
    )
    assert "identifiers.given_name: List should have at least 1 item" in message
    assert "identifiers.date_of_birth.year: Field required" in message
    assert "identifiers.postcode.1: Input should be a valid string" in message
    assert "identifiers.sex: expected a column name" in message
    # the other form of a date is not blamed for the parts form's problem
    assert "formats" not in message and "date_of_birth.day" not in message
    assert message.count("\n") == 0


def test_every_problem_of_the_columns_is_listed_at_once():
    message = _problems(
        {
            "family_name": ["SURNAME", "SURNAME"],
            "postcode": {"column": "ADDRESS", "find": True},
            "other_id": "FORENAME",
            "middle_names": "FORENAME",
        },
        source={"country": "IE"},
    )
    assert "identifiers.family_name: a column is listed twice" in message
    assert "identifiers.postcode: find = true looks for UK postcodes" in message
    assert "identifiers.other_id: column 'FORENAME' is already mapped to middle_names" in message


def test_a_column_serves_one_identifier_and_never_the_payload():
    message = _problems(
        {
            "given_name": ["FORENAME1", "FORENAME2"],
            "middle_names": "FORENAME2",
            "postcode": ["PC_OUT", "PC_IN"],
        },
        payload={"columns": ["PC_IN", "WARD"]},
    )
    assert "identifiers.middle_names: column 'FORENAME2' is already mapped to given_name" in (
        message
    )
    assert "payload.columns: 'PC_IN' is an identifier or the local id" in message
    assert "WARD" not in message


def test_finding_a_postcode_is_for_uk_addresses_only():
    message = _problems({"postcode": {"column": "ADDRESS", "find": True}}, source={"country": "IE"})
    assert "find = true looks for UK postcodes" in message and "'IE'" in message
    message = _problems({"postcode": {"column": "ADDRESS", "find": False}})
    assert "find = false" in message


def test_fhir_mappings_refuse_column_forms():
    with pytest.raises(MappingError) as caught:
        parse_mapping(
            {
                "source": {"format": "fhir"},
                "record": {"id": "id"},
                "identifiers": {
                    "given_name": ["A", "B"],
                    "date_of_birth": {"day": "D", "month": "M", "year": "Y"},
                    "postcode": {"column": "ADDRESS", "find": True},
                },
            }
        )
    message = str(caught.value)
    for name in ("given_name", "date_of_birth", "postcode"):
        assert f"identifiers.{name}: FHIR fields are true/false" in message


def test_the_local_id_may_be_an_identifier_column(tmp_path):
    # a GP extract keyed by NHS number: the id never leaves, the number is tokenised
    path = _write(tmp_path, ["NHS"], [["9434765919"]])
    mapping = {"source": {"format": "csv"}, "record": {"id": "NHS"}}
    mapping["identifiers"] = {"nhs_number": "NHS"}
    (record,) = _records(path, mapping)
    assert record.local_id == "9434765919" and record.nhs_number == "9434765919"


# --- names over several columns --------------------------------------------------------------


def test_given_names_over_several_columns_read_as_one_column(tmp_path):
    header = ["ID", "FORENAME1", "FORENAME2", "FORENAME3", "SURNAME1", "SURNAME2"]
    rows = [
        ["1", "John", "Paul", "George", "Smith", ""],
        ["2", "", "Mary", "", "Garcia", "Lopez"],  # an empty first cell is skipped
        ["3", "Ann", "NULL", "Not known", "Jones", "N/A"],  # null markers, a placeholder
        ["4", "UNKNOWN", "Jim", "", "Brown", ""],  # the first cell decides
        ["5", "NULL", "", "", "", ""],
        ["6", "", "", "", "", ""],
    ]
    split = _records(
        _write(tmp_path, header, rows),
        _mapping(
            {
                "given_name": ["FORENAME1", "FORENAME2", "FORENAME3"],
                "family_name": ["SURNAME1", "SURNAME2"],
            }
        ),
    )
    names = [(r.given_name, r.middle_names, r.family_name) for r in split]
    assert names == [
        ("JOHN", "PAUL GEORGE", "SMITH"),
        ("MARY", None, "GARCIA LOPEZ"),
        ("ANN", None, "JONES"),
        (None, None, "BROWN"),
        (None, None, None),
        (None, None, None),
    ]
    joined = [
        ["1", "John Paul George", "Smith"],
        ["2", "Mary", "Garcia Lopez"],
        ["3", "Ann", "Jones"],
    ]
    one = _records(
        _write(tmp_path, ["ID", "GIVEN", "FAMILY"], joined, "one.csv"),
        _mapping({"given_name": "GIVEN", "family_name": "FAMILY"}),
    )
    assert [_fields(r) for r in split[:3]] == [_fields(r) for r in one]


def test_split_names_are_counted_as_one_column_would_be(tmp_path):
    header = ["ID", "F1", "F2", "M1", "M2"]
    rows = [["1", "UNKNOWN", "", "", ""], ["2", "NULL", "", "Not known", ""], ["3", "", "", "", ""]]
    collector = QualityCollector()
    mapping = parse_mapping(_mapping({"given_name": ["F1", "F2"], "middle_names": ["M1", "M2"]}))
    list(iter_records(_write(tmp_path, header, rows), mapping, report=collector, today=TODAY))
    fields = {f.field: f for f in collector.report().fields}
    given = fields["given_name"]
    assert (given.column, given.placeholder, given.missing) == ("F1 + F2", 2, 1)
    assert fields["middle_names"].column == "M1 + M2"


def test_middle_names_over_several_columns_follow_the_extra_given_names(tmp_path):
    path = _write(
        tmp_path, ["ID", "GIVEN", "MID1", "MID2"], [["1", "John Paul", "George", "Ringo"]]
    )
    (record,) = _records(path, _mapping({"given_name": "GIVEN", "middle_names": ["MID1", "MID2"]}))
    assert (record.given_name, record.middle_names) == ("JOHN", "PAUL GEORGE RINGO")


def test_name_text_rules():
    assert name_text(SEPARATOR.join(["  Seán ", "", "Óg"])) == "Seán Óg"
    assert name_text(SEPARATOR.join(["Ann", "(null)", "#N/A"])) == "Ann"
    assert name_text(SEPARATOR.join(["", "NULL"])) == "NULL"  # read as a placeholder


# --- address lines -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cells", "line"),
    [
        (["12 High St", "Bath"], "12 HIGH STREET BATH"),  # every line, in order
        (["", "12 High St", "Bath"], "12 HIGH STREET BATH"),  # an empty line is skipped
        (["12", "High St", "Bath"], "12 HIGH STREET BATH"),
        (["12a", "", "High St"], "12A HIGH STREET"),
        (["12-14", "High St"], "12 14 HIGH STREET"),
        (["Rose Cottage", "High St"], "ROSE COTTAGE HIGH STREET"),  # address_2 is kept
        (["Flat 3", "12 High St Rd"], "FLAT 3 12 HIGH ST ROAD"),  # each line's last word
        (["12 High St", "Flat 3"], "12 HIGH STREET FLAT 3"),
        (["N/A", "12 High St"], "12 HIGH STREET"),  # a null marker is an empty cell
    ],
)
def test_address_line_over_several_columns_joins_them(tmp_path, cells, line):
    header = ["ID", "ADDR1", "ADDR2", "ADDR3"][: len(cells) + 1]
    path = _write(tmp_path, header, [["1", *cells]])
    (record,) = _records(path, _mapping({"address_line": header[1:]}))
    assert record.address_line == line


def test_address_lines_not_known_line_and_blanks():
    assert check_address_lines(["No fixed abode", "Bath"]) is Defect.PLACEHOLDER
    assert check_address_lines(["NULL", "(null)"]) is Defect.PLACEHOLDER
    assert check_address_lines(["", " "]) is Defect.MISSING


# --- dates of birth in three columns -------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "month", "year", "expected"),
    [
        ("1", "2", "1980", "1980-02-01"),
        ("01", "02", "1980", "1980-02-01"),
        (" 1 ", "Feb", "1980", "1980-02-01"),
        ("1", "FEBRUARY", "1980", "1980-02-01"),
        ("1", "feb.", "1980", "1980-02-01"),
        ("30", "Sept", "1980", "1980-09-30"),
        ("1.0", "2.0", "1980.0", "1980-02-01"),  # a spreadsheet's floats
        ("29", "2", "1980", "1980-02-29"),
        ("29", "2", "1981", INVALID),  # not a leap year
        ("31", "4", "1980", INVALID),
        ("1", "13", "1980", INVALID),
        ("0", "2", "1980", Defect.PARTIAL),  # a year and month alone
        ("1", "Fbr", "1980", INVALID),
        ("1", "2", "80", INVALID),  # two-digit years are not guessed
        ("", "2", "1980", Defect.PARTIAL),  # a partial date is not a date, nor invalid
        ("3", "", "1980", INVALID),  # a day without a month
        ("1", "2", "2027", INVALID),  # after today
        ("1", "1", "1890", INVALID),  # older than anyone living
        ("1", "1", "1900", PLACEHOLDER),  # a listed default date
        ("", "", "UNKNOWN", PLACEHOLDER),
        ("NK", "NK", "NK", PLACEHOLDER),
        ("", "", "", MISSING),
        (" ", "", "", MISSING),
    ],
)
def test_date_parts_follow_the_whole_date_rules(day, month, year, expected):
    assert DateParser(["%d/%m/%Y"], today=TODAY).check_parts(day, month, year) == expected


def test_date_parts_in_an_extract_give_the_whole_dates(tmp_path):
    rows = [["1", "1", "Feb", "1980"], ["2", "31", "4", "1980"], ["3", "", "", ""]]
    path = _write(tmp_path, ["ID", "DOB_DAY", "DOB_MONTH", "DOB_YEAR"], rows)
    mapping = parse_mapping(
        _mapping({"date_of_birth": {"day": "DOB_DAY", "month": "DOB_MONTH", "year": "DOB_YEAR"}})
    )
    collector = QualityCollector()
    records = list(iter_records(path, mapping, report=collector, today=TODAY))
    assert [r.date_of_birth for r in records] == ["1980-02-01", None, None]
    report = collector.report()
    dob = next(f for f in report.fields if f.field == "date_of_birth")
    assert (dob.valid, dob.invalid, dob.missing) == (1, 1, 1)
    assert dob.column == "DOB_DAY + DOB_MONTH + DOB_YEAR"
    assert [(p.line, p.column) for p in report.value_problems] == [
        (3, "DOB_DAY + DOB_MONTH + DOB_YEAR")
    ]


# --- postcodes -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("outward", "inward", "expected"),
    [
        ("BA1", "1AA", "BA1 1AA"),
        (" ba1 ", "1aa", "BA1 1AA"),
        ("SW1A", "2AA", "SW1A 2AA"),
        ("BA1", "", None),  # an outward code alone is not a postcode
        ("", "", None),
        ("ZZ99", "3VZ", None),  # NHS pseudo-postcode: a placeholder
    ],
)
def test_postcode_in_outward_and_inward_columns(tmp_path, outward, inward, expected):
    path = _write(tmp_path, ["ID", "PC_OUT", "PC_IN"], [["1", outward, inward]])
    (record,) = _records(path, _mapping({"postcode": ["PC_OUT", "PC_IN"]}))
    assert record.postcode == expected


def test_split_postcodes_are_counted_as_one_column_would_be(tmp_path):
    rows = [["1", "BA1", "1AA"], ["2", "BA1", ""], ["3", "", ""], ["4", "NULL", "NULL"]]
    path = _write(tmp_path, ["ID", "PC_OUT", "PC_IN"], rows)
    collector = QualityCollector()
    mapping = parse_mapping(_mapping({"postcode": ["PC_OUT", "PC_IN"]}))
    list(iter_records(path, mapping, report=collector, today=TODAY))
    postcode = next(f for f in collector.report().fields if f.field == "postcode")
    assert (postcode.valid, postcode.invalid, postcode.missing, postcode.placeholder) == (
        1,
        1,
        1,
        1,
    )


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("12 High St, Bath, BA1 1AA", "BA1 1AA"),
        ("12 High St\nBath\nba11aa", "BA1 1AA"),  # a quoted line break, no space
        ("Flat 2, 3 Park Rd, London SW1A 2AA, UK", "SW1A 2AA"),
        ("Unit 4, EC1A 1BB Street, Bath BA1 1AA", "BA1 1AA"),  # the last one
        ("12 High St, Bath", None),
        ("12 High St, Bath BA1", None),
        ("No fixed abode", None),
        ("ZZ99 3VZ", None),
        ("", None),
    ],
)
def test_postcode_found_in_a_free_text_address(tmp_path, address, expected):
    path = _write(tmp_path, ["ID", "ADDRESS"], [["1", address]])
    mapping = _mapping({"address_line": "ADDRESS", "postcode": {"column": "ADDRESS", "find": True}})
    (record,) = _records(path, mapping)
    assert record.postcode == expected


def test_found_postcodes_are_counted(tmp_path):
    rows = [["1", "1 A St, BA1 1AA"], ["2", "1 A St"], ["3", "NFA"], ["4", "ZZ99 3VZ"], ["5", ""]]
    collector = QualityCollector()
    mapping = parse_mapping(_mapping({"postcode": {"column": "ADDRESS", "find": True}}))
    path = _write(tmp_path, ["ID", "ADDRESS"], rows)
    list(iter_records(path, mapping, report=collector, today=TODAY))
    postcode = next(f for f in collector.report().fields if f.field == "postcode")
    assert (postcode.valid, postcode.missing, postcode.placeholder, postcode.invalid) == (
        1,
        2,
        2,
        0,
    )


def test_find_postcode_shape():
    assert find_postcode("The Old Mill, Ln, GU1 4XX Guildford") == "GU1 4XX"
    assert find_postcode("FLAT 1A 2BB") == ""  # an outward code starts with a letter
    assert find_postcode("ABC12 3DE") == ""  # not inside a longer word


# --- the same people in two conventions ------------------------------------------------------


_ONE_HEADER = ["ID", "NHS", "GIVEN", "FAMILY", "DOB", "POSTCODE", "ADDRESS", "WARD"]
_ONE = [
    ["1", "9434765919", "John Paul", "Smith", "01/02/1980", "BA1 1AA", "12 High St", "W1"],
    ["2", "", "Zoë", "Smith-Jones", "29/02/1984", "SW1A 2AA", "Rose Cottage", "W2"],
    ["3", "", "Ann", "O'Brien", "15/09/1975", "", "", "W3"],
]
_SPLIT_HEADER = [
    "ID",
    "NHS",
    "FORENAME1",
    "FORENAME2",
    "SURNAME",
    "DOB_DAY",
    "DOB_MONTH",
    "DOB_YEAR",
    "PC_OUT",
    "PC_IN",
    "ADDR1",
    "ADDR2",
    "WARD",
]
_SPLIT = [
    ["1", "9434765919", "John", "Paul", "Smith", "1", "2", "1980", "BA1", "1AA", "12", "High St"]
    + ["W1"],
    ["2", "", "Zoë", "", "Smith-Jones", "29", "Feb", "1984", "SW1A", "2AA", "Rose Cottage", ""]
    + ["W2"],
    ["3", "", "Ann", "NULL", "O'Brien", "15", "September", "1975", "", "", "", ""] + ["W3"],
]
_SPLIT_MAPPING = _mapping(
    {
        "nhs_number": "NHS",
        "given_name": ["FORENAME1", "FORENAME2"],
        "family_name": "SURNAME",
        "date_of_birth": {"day": "DOB_DAY", "month": "DOB_MONTH", "year": "DOB_YEAR"},
        "postcode": ["PC_OUT", "PC_IN"],
        "address_line": ["ADDR1", "ADDR2"],
    },
    payload={"columns": ["WARD"]},
)
_ONE_MAPPING = _mapping(
    {
        "nhs_number": "NHS",
        "given_name": "GIVEN",
        "family_name": "FAMILY",
        "date_of_birth": {"column": "DOB", "formats": ["%d/%m/%Y"]},
        "postcode": "POSTCODE",
        "address_line": "ADDRESS",
    },
    payload={"columns": ["WARD"]},
)


def test_split_and_one_column_extracts_of_the_same_people_give_the_same_records(tmp_path):
    one = _records(_write(tmp_path, _ONE_HEADER, _ONE, "one.csv"), _ONE_MAPPING)
    split = _records(_write(tmp_path, _SPLIT_HEADER, _SPLIT, "split.csv"), _SPLIT_MAPPING)
    assert [_fields(r) for r in split] == [_fields(r) for r in one]
    assert split[0].payload == ("W1",) and split[1].date_of_birth == "1984-02-29"


def test_the_workers_block_path_reads_split_fields_as_a_single_pass_does(tmp_path):
    path = _write(tmp_path, _SPLIT_HEADER, _SPLIT * 3)
    mapping = parse_mapping(_SPLIT_MAPPING)
    single = QualityCollector()
    expected = list(iter_records(path, mapping, report=single, today=TODAY))
    blocked = QualityCollector()
    blocks = record_blocks(path, mapping, report=blocked, today=TODAY, size=4)
    got: list[NormalisedRecord] = []
    for block in blocks.blocks:
        records, counts = blocks.prepare(block)
        got.extend(records)
        blocks.absorb(counts)
    assert got == expected
    assert blocked.report() == single.report()


def test_split_fields_tokenise_in_worker_processes_as_one_column_does(tmp_path):
    params = fixed_params("conventions", ("WARD",))
    one = _write(tmp_path, _ONE_HEADER, _ONE, "one.csv")
    expected = list(
        tokenise_records(iter_records(one, parse_mapping(_ONE_MAPPING), today=TODAY), params)
    )
    split = _write(tmp_path, _SPLIT_HEADER, _SPLIT, "split.csv")
    blocks = record_blocks(
        split, parse_mapping(_SPLIT_MAPPING), report=QualityCollector(), today=TODAY, size=2
    )
    got = list(tokenise_records(blocks, params, workers=2))

    def records(chunks: list[Any]) -> list[tuple[Any, ...]]:
        decoded = [decode_chunk(c.data) for c in chunks]
        return [row for d in decoded for row in zip(d.refs, d.tokens, d.payload, strict=True)]

    assert len(got) == 2 and records(got) == records(expected)
    assert sum(token is not None for _, tokens, _ in records(got) for token in tokens) > 6


# --- columns missing from the file -----------------------------------------------------------


def test_a_missing_column_is_named_with_the_closest_header_names(tmp_path):
    path = _write(tmp_path, _SPLIT_HEADER, _SPLIT)
    mapping = _mapping(
        {
            "given_name": ["FORENAME_1", "FORENAME2"],
            "date_of_birth": {"day": "DOB DAY", "month": "DOB_MONTH", "year": "BIRTH_YEAR"},
            "sex": "GENDER",
        }
    )
    with pytest.raises(InputError) as caught:
        _records(path, mapping)
    message = str(caught.value)
    assert "'FORENAME_1' (closest in the header: 'FORENAME1', 'FORENAME2')" in message
    assert "'DOB DAY' (closest in the header: 'DOB_DAY'" in message
    assert "'BIRTH_YEAR' (closest in the header: 'DOB_YEAR'" in message
    assert "'GENDER' (nothing similar in the header)" in message
    assert "\n" not in message


def test_closest_names_come_from_the_header_not_a_title_line_or_a_row(tmp_path):
    path = tmp_path / "report.csv"
    path.write_text(
        '"Practice list","Zoe Smith-Jones"\nID,FORENAME,SURNAME\n1,Zoe,Smith-Jones\n',
        encoding="utf-8",
    )
    mapping = _mapping({"given_name": "FORENAME", "family_name": "FAMILY NAME"})
    with pytest.raises(InputError) as caught:
        _records(path, mapping)
    message = str(caught.value)
    assert "mapped columns not in the header: 'FAMILY NAME'" in message
    assert "Zoe" not in message and "Smith" not in message and "Practice" not in message


def test_check_stops_with_one_line_naming_the_missing_column(tmp_path, capsys):
    path = _write(tmp_path, _SPLIT_HEADER, _SPLIT)
    mapping = tmp_path / "m.toml"
    mapping.write_text(
        '[source]\nformat = "csv"\n[record]\nid = "ID"\n[identifiers]\n'
        'given_name = ["FORENAME1", "FORNAME2"]\n',
        encoding="utf-8",
    )
    code = run_cli(cli, "tessera-sdk", ["check", str(path), "--mapping", str(mapping)])
    err = capsys.readouterr().err
    assert code == 11 and err.count("\n") == 1
    assert "'FORNAME2' (closest in the header: 'FORENAME2'" in err


def test_the_postcode_is_found_in_the_last_address_line_that_holds_one(tmp_path):
    # SystmOne-style: five address lines, the postcode on the last one with a value.
    header = ["ID", "ADDR1", "ADDR2", "ADDR3", "ADDR4", "ADDR5"]
    rows = [
        ["1", "12 High St", "Widcombe", "Bath", "BA2 4AA", ""],
        ["2", "Flat 3", "Rose Court", "Frome", "Somerset", "ba11 1ab"],
        ["3", "The Old Rectory", "BA1 1AA (old)", "Wells", "BA5 2PA", ""],
        ["4", "no postcode", "here", "", "", ""],
        ["5", "NULL", "", "", "", ""],
    ]
    path = _write(tmp_path, header, rows)
    mapping = _mapping(
        {
            "postcode": {"column": header[1:], "find": True},
            "address_line": ["ADDR1", "ADDR2"],
        }
    )
    parsed = parse_mapping(mapping)
    assert parsed.column_of("postcode") == "ADDR1 + ADDR2 + ADDR3 + ADDR4 + ADDR5"
    records = _records(path, mapping)
    assert [r.postcode for r in records] == ["BA2 4AA", "BA11 1AB", "BA5 2PA", None, None]
    collector = QualityCollector()
    list(iter_records(path, parsed, today=TODAY, report=collector))
    postcode = collector.report().field("postcode")
    assert (postcode.valid, postcode.missing, postcode.placeholder) == (3, 1, 1)
