"""Extracts shaped as real systems write them, through ``tessera-sdk check`` and the pipeline.

Every file is built in ``tmp_path`` at test time, in the conventions of SQL Server, Oracle,
Excel "Save as CSV", GP and hospital systems. NHS numbers are made from the 999 test range
with their check digit computed here, so no identifier is committed.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from client_sdk.cli import cli
from client_sdk.errors import InputError
from client_sdk.mapping import parse_mapping
from client_sdk.normalise.dates import DateParser
from client_sdk.normalise.defect import Defect
from client_sdk.normalise.names import check_family_name, check_given_names, split_full_name
from client_sdk.normalise.nhs_number import check_nhs_number, is_valid_nhs_number
from client_sdk.normalise.postcode import check_postcode
from client_sdk.normalise.sex import check_sex
from client_sdk.pipeline import iter_records
from client_sdk.quality import QualityCollector, QualityReport
from client_sdk.record import NormalisedRecord
from client_sdk.tokenise import Tokeniser
from keys.cliutil import run_cli
from tests.support.tokenise_world import fixed_params

TODAY = date(2026, 11, 24)
MISSING, INVALID, PLACEHOLDER = Defect.MISSING, Defect.INVALID, Defect.PLACEHOLDER


def _nhs(prefix: str) -> str:
    """A valid NHS number from nine digits (the check digit computed)."""
    for digit in "0123456789":
        if is_valid_nhs_number(prefix + digit):
            return prefix + digit
    raise ValueError("no check digit: choose other digits")


def _spaced(nhs: str) -> str:
    return f"{nhs[:3]} {nhs[3:6]} {nhs[6:]}"


NHS_A = _nhs("999123457")
NHS_B = _nhs("999765432")
NHS_C = _nhs("999000111")


# --- dates ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("formats", "raw"),
    [
        (["%Y-%m-%d"], "1980-02-01 00:00:00.000"),  # SQL Server datetime
        (["%Y-%m-%d"], "1980-02-01 00:00:00.0000000 +00:00"),  # SQL Server datetimeoffset
        (["%Y-%m-%d"], "1980-02-01T00:00:00Z"),
        (["%Y-%m-%d"], "1980-02-01T00:00:00.000+01:00"),  # local midnight in summer time
        (["%d-%b-%y"], "01-FEB-80"),  # Oracle DD-MON-RR
        (["%d-%b-%y"], "01-Feb-80 12.00.00.000000 AM"),  # Oracle TIMESTAMP
        (["%d-%b-%Y"], "01-FEB-1980"),
        (["%Y%m%d"], "19800201"),
        (["%d/%m/%Y"], "1/2/1980"),  # no leading zeros
        (["%d/%m/%Y"], "01/02/1980 00:00"),  # Excel, en-GB
        (["%d/%m/%Y"], "1/2/1980 0:00"),  # Excel, custom d/m/yyyy h:mm
        (["%m/%d/%Y"], "2/1/1980 12:00:00 AM"),  # .NET / Excel, en-US
        (["%m/%d/%Y %I:%M:%S %p"], "2/1/1980 3:15:00 PM"),  # a time the mapping declares
        (["%d/%m/%Y", "%Y-%m-%d"], " 1980-02-01 "),  # the second format, spaces around
    ],
)
def test_dates_as_systems_export_them(formats, raw):
    assert DateParser(formats, today=TODAY).check(raw) == "1980-02-01"


@pytest.mark.parametrize(
    ("formats", "raw", "outcome"),
    [
        (["%Y-%m-%d"], "1900-01-01 00:00:00.000", PLACEHOLDER),
        (["%Y-%m-%d"], "1753-01-01 00:00:00.000", PLACEHOLDER),  # SQL Server minimum
        (["%Y-%m-%d"], "1800-01-01", PLACEHOLDER),
        (["%Y-%m-%d"], "0001-01-01", PLACEHOLDER),
        (["%Y-%m-%d"], "9999-12-31", PLACEHOLDER),
        (["%d/%m/%Y"], "30/12/1899", PLACEHOLDER),  # the spreadsheet's day zero
        (["%d/%m/%Y"], "NULL", PLACEHOLDER),
        (["%d/%m/%Y"], "", MISSING),
        (["%d/%m/%Y"], "01/02/2030", INVALID),  # born in the future
        (["%d/%m/%Y"], "31/04/1980", INVALID),
        (["%Y-%m-%d"], "1980-02-01 14:30:00", INVALID),  # a time the mapping did not declare
        (["%m/%d/%Y"], "2/1/1980 12:00:00 PM", INVALID),  # noon is not midnight
        (["%d-%b-%y"], "01-FEB-1980", INVALID),  # four digits where the mapping says %y
        (["%d/%m/%Y"], "29252", INVALID),  # an Excel serial number
    ],
)
def test_placeholder_and_impossible_dates(formats, raw, outcome):
    assert DateParser(formats, today=TODAY).check(raw) is outcome


# --- NHS numbers ---------------------------------------------------------------------------


def test_nhs_numbers_as_systems_and_spreadsheets_write_them():
    spaced = _spaced(NHS_A)
    for raw in (
        NHS_A,
        spaced,
        spaced.replace(" ", "-"),
        f"'{NHS_A}",  # Excel: "this is text"
        f"'{spaced}",
        f"{NHS_A}.0",  # a number column written as a float
        f'="{NHS_A}"',  # the formula exports use to keep Excel off it
        f"{NHS_A[0]},{NHS_A[1:4]},{NHS_A[4:7]},{NHS_A[7:]}",  # a thousands separator
        f" {NHS_A}\t",
    ):
        assert check_nhs_number(raw) == NHS_A, raw


def test_an_nhs_number_that_lost_digits_is_never_accepted():
    # Excel's scientific notation: the digits after the sixth are gone (or may be).
    assert check_nhs_number(f"{NHS_A[0]}.{NHS_A[1:6]}E+09") is INVALID
    assert check_nhs_number(f"{NHS_A[0]}.{NHS_A[1:]}E+09") is INVALID
    assert check_nhs_number(NHS_A[:9]) is INVALID  # a leading digit dropped
    assert check_nhs_number(NHS_A + "0") is INVALID
    assert check_nhs_number(f"{NHS_A}.5") is INVALID


@pytest.mark.parametrize("raw", ["0000000000", "1111111111", "9999999999", "1234567890"])
def test_placeholder_nhs_numbers_whether_or_not_they_pass_the_check(raw):
    assert check_nhs_number(raw) is PLACEHOLDER
    assert check_nhs_number(f"{raw[:3]} {raw[3:6]} {raw[6:]}") is PLACEHOLDER


@pytest.mark.parametrize("raw", ["NULL", "null", "N/A", "Not Known", "UNKNOWN", "TBC"])
def test_missing_words_in_an_nhs_number_column_are_placeholders(raw):
    assert check_nhs_number(raw) is PLACEHOLDER


# --- postcodes -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "outcome"),
    [
        ("sw1a1aa", "SW1A 1AA"),
        (" SW1A  1AA ", "SW1A 1AA"),
        ("SW1A-1AA", "SW1A 1AA"),
        ("GY1 1AA", "GY1 1AA"),  # Guernsey
        ("JE2 3AB", "JE2 3AB"),  # Jersey
        ("IM1 1AA", "IM1 1AA"),  # Isle of Man
        ("BF1 3AA", "BF1 3AA"),  # a BFPO postcode
        ("ZZ99 3VZ", PLACEHOLDER),  # NHS: no fixed abode
        ("zz993wz", PLACEHOLDER),  # NHS: not known
        ("NFA", PLACEHOLDER),
        ("NULL", PLACEHOLDER),
        ("BFPO 123", INVALID),  # a BFPO number is not a postcode
        ("SW1A", INVALID),  # district only: never a full postcode's token
        ("BA1 1", INVALID),
        ("", MISSING),
    ],
)
def test_postcodes(raw, outcome):
    result = check_postcode(raw)
    assert result == outcome if isinstance(outcome, str) else result is outcome


# --- names ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spellings",
    [
        ["O'BRIEN", "O BRIEN", "OBRIEN", "O’Brien", "o'brien"],
        ["MC DONALD", "McDonald", "MCDONALD"],
        ["SMITH-JONES", "SMITH JONES", "Smith–Jones"],
        ["van der Berg", "Van Der Berg", "VANDERBERG", "vanderberg"],
        ["St. John", "ST JOHN", "Saint John", "StJohn"],
    ],
)
def test_family_name_spellings_are_one_value(spellings):
    assert len({check_family_name(s) for s in spellings}) == 1
    assert isinstance(check_family_name(spellings[0]), str)


@pytest.mark.parametrize(
    ("raw", "outcome"),
    [
        ("Mr John", ("JOHN", None)),
        ("JOHN PAUL", ("JOHN", "PAUL")),
        ("Baby Of Smith", PLACEHOLDER),
        ("Unknown", PLACEHOLDER),
        ("XXX", PLACEHOLDER),
        ("Not Known", PLACEHOLDER),
        ("NULL", PLACEHOLDER),
        ("N/A", PLACEHOLDER),
        ("TBC", PLACEHOLDER),
        ("No Forename", PLACEHOLDER),
        ("Mrs", PLACEHOLDER),
        ("-", MISSING),
        ("?", MISSING),
        ("", MISSING),
    ],
)
def test_given_names(raw, outcome):
    result = check_given_names(raw)
    assert result == outcome if isinstance(outcome, tuple) else result is outcome


@pytest.mark.parametrize("raw", ["محمد", "王伟", "김민준", "Иванова", "Ελένη"])
def test_names_in_other_scripts_are_romanised_never_empty(raw):
    given = check_given_names(raw)
    family = check_family_name(raw)
    assert isinstance(given, tuple) and given[0].isascii() and given[0].isalpha()
    assert isinstance(family, str) and family.isascii() and family.strip()


def test_a_name_with_digits_keeps_its_letters():
    assert check_family_name("Smith2") == "SMITH"
    assert split_full_name("SMITH, John (Mr)", "FAMILY, GIVEN") == (("JOHN", None), "SMITH")


# --- sex -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "outcome"),
    [
        ("Male", "M"),
        ("male ", "M"),
        ("m", "M"),
        ("1", "M"),
        ("F", "F"),
        ("Female", "F"),
        ("2", "F"),
        ("9", PLACEHOLDER),
        ("0", PLACEHOLDER),
        ("I", PLACEHOLDER),
        ("Indeterminate", PLACEHOLDER),
        ("Indeterminate (unable to be classified as either male or female)", PLACEHOLDER),
        ("Not Known", PLACEHOLDER),
        ("Not Known (PERSON STATED GENDER CODE not recorded)", PLACEHOLDER),
        ("X", PLACEHOLDER),
        ("u", PLACEHOLDER),
        ("NULL", PLACEHOLDER),
        ("Unspecified", PLACEHOLDER),
        ("", MISSING),
        ("Q", INVALID),
    ],
)
def test_sex_codes(raw, outcome):
    assert check_sex(raw) == outcome


# --- CSV shapes through the pipeline -------------------------------------------------------

HEADER = ["ID", "NHS", "FORENAME", "SURNAME", "DOB", "SEX", "POSTCODE", "WARD"]


def _row(local_id: str, nhs: str = NHS_A, name: str = "John") -> list[str]:
    return [local_id, nhs, name, "Smith", "01/02/1980", "M", "BA1 1AA", "W1"]


def _mapping(**source: str) -> dict[str, object]:
    return {
        "source": {"format": "csv", **source},
        "record": {"id": "ID"},
        "identifiers": {
            "nhs_number": "NHS",
            "given_name": "FORENAME",
            "family_name": "SURNAME",
            "date_of_birth": {"column": "DOB", "formats": ["%d/%m/%Y"]},
            "sex": "SEX",
            "postcode": "POSTCODE",
        },
        "payload": {"columns": ["WARD"]},
    }


def _read(path: Path, mapping: dict[str, object]) -> tuple[list[NormalisedRecord], QualityReport]:
    collector = QualityCollector()
    records = list(iter_records(path, parse_mapping(mapping), report=collector, today=TODAY))
    return records, collector.report()


def _write(tmp_path: Path, text: str, *, encoding: str = "utf-8") -> Path:
    path = tmp_path / "extract.csv"
    path.write_bytes(text.encode(encoding))
    return path


def _lines(*rows: list[str], sep: str = ",", end: str = "\n") -> str:
    return "".join(sep.join(row) + end for row in rows)


def _problems(report: QualityReport) -> list[tuple[int, str]]:
    return [(p.line, p.reason) for p in report.problems]


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_delimiters_crlf_and_a_header_with_bom_spaces_and_other_case(tmp_path, delimiter):
    header = [" id", "NHS ", "Forename", "surname ", "dob", "Sex", "PostCode", "ward"]
    text = "\ufeff" + _lines(header, _row("1"), _row("2"), sep=delimiter, end="\r\n")
    records, report = _read(_write(tmp_path, text), _mapping(delimiter=delimiter))
    assert [(r.line, r.local_id, r.nhs_number, r.family_name) for r in records] == [
        (2, "1", NHS_A, "SMITH"),
        (3, "2", NHS_A, "SMITH"),
    ]
    assert report.rows_rejected == 0


def test_quoted_line_breaks_keep_file_line_numbers(tmp_path):
    text = (
        _lines(HEADER)
        + f'1,{NHS_A},John,"Smith\nJones",01/02/1980,M,BA1 1AA,"ward 3\nbay 2"\n'
        + _lines(_row("2"))
        + "3,too,few\n"
        + _lines(_row("4"))
    )
    records, report = _read(_write(tmp_path, text), _mapping())
    assert [(r.line, r.local_id) for r in records] == [(2, "1"), (5, "2"), (7, "4")]
    assert records[0].family_name == "SMITH JONES"
    assert _problems(report) == [(6, "malformed row: 3 fields, header has 8")]


def test_ragged_rows_are_reported_by_line_and_the_rest_goes_on(tmp_path):
    text = _lines(
        HEADER,
        _row("1"),
        ["2", NHS_A, "John"],  # too few
        [*_row("3"), "surplus"],  # too many
        [*_row("4"), "", ""],  # a trailing delimiter or two: empty fields, tolerated
        [],
        _row("5"),
    )
    records, report = _read(_write(tmp_path, text), _mapping())
    assert [r.local_id for r in records] == ["1", "4", "5"]
    assert [r.line for r in records] == [2, 5, 7]
    assert _problems(report) == [
        (3, "malformed row: 3 fields, header has 8"),
        (4, "malformed row: 9 fields, header has 8"),
    ]


def test_a_spreadsheets_empty_rows_are_ignored_like_blank_lines(tmp_path):
    empty = [""] * len(HEADER)
    text = _lines(HEADER, _row("1"), empty, _row("2"), empty, empty)
    records, report = _read(_write(tmp_path, text), _mapping())
    assert [(r.line, r.local_id) for r in records] == [(2, "1"), (4, "2")]
    assert (report.rows_read, report.rows_rejected) == (2, 0)


def test_a_trailing_delimiter_on_the_header_alone(tmp_path):
    text = ",".join(HEADER) + ",\n" + _lines(_row("1"), [*_row("2"), ""])
    records, report = _read(_write(tmp_path, text), _mapping())
    assert [r.local_id for r in records] == ["1", "2"]
    assert report.rows_rejected == 0


def test_spaces_after_the_delimiter_do_not_break_quoting(tmp_path):
    text = (
        ", ".join(HEADER)
        + "\n"
        + f'1, "{NHS_A}", "John, Paul", Smith, 01/02/1980, M, BA1 1AA, W1\n'
    )
    records, report = _read(_write(tmp_path, text), _mapping())
    assert report.rows_rejected == 0
    assert (records[0].given_name, records[0].middle_names) == ("JOHN", "PAUL")
    assert records[0].nhs_number == NHS_A


def test_null_everywhere_is_missing_not_invalid(tmp_path):
    text = _lines(HEADER, ["1", *["NULL"] * 6, "W1"], _row("2"))
    records, report = _read(_write(tmp_path, text), _mapping())
    first = records[0]
    assert (first.nhs_number, first.given_name, first.family_name) == (None, None, None)
    assert (first.date_of_birth, first.sex, first.postcode) == (None, None, None)
    assert report.value_problems == []
    for field in ("nhs_number", "given_name", "family_name", "date_of_birth", "sex", "postcode"):
        assert report.field(field).placeholder == 1, field
        assert report.field(field).invalid == 0, field


def test_sql_server_export_rule_and_trailer_are_not_records(tmp_path):
    """``sqlcmd -s"," -o``: dashes under the header, a blank line and a row count after."""
    rule = ["-" * len(name) for name in HEADER]
    text = _lines(HEADER, rule, _row("1"), _row("2")) + "\n(2 rows affected)\n"
    records, report = _read(_write(tmp_path, text), _mapping())
    assert [(r.line, r.local_id) for r in records] == [(3, "1"), (4, "2")]
    assert (report.rows_read, report.rows_rejected, report.rows_skipped) == (2, 0, 2)


@pytest.mark.parametrize(
    "trailer",
    ["TOTAL ROWS: 2\n", "\n(2 rows affected)\n\nCompletion time: 2026-11-24T10:00:00\n", "\x1a"],
)
def test_lines_with_no_delimiter_after_the_data_are_a_trailer(tmp_path, trailer):
    text = _lines(HEADER, _row("1"), _row("2")) + trailer
    records, report = _read(_write(tmp_path, text), _mapping())
    assert [r.local_id for r in records] == ["1", "2"]
    assert report.rows_rejected == 0
    assert report.rows_skipped >= 1


def test_a_line_with_no_delimiter_among_the_data_is_a_bad_row(tmp_path):
    text = _lines(HEADER, _row("1"), ["broken line"], _row("2"))
    records, report = _read(_write(tmp_path, text), _mapping())
    assert [r.local_id for r in records] == ["1", "2"]
    assert _problems(report) == [(3, "malformed row: 1 fields, header has 8")]
    assert report.rows_skipped == 0


def test_excel_sep_line(tmp_path):
    text = "sep=;\n" + _lines(HEADER, _row("1"), sep=";")
    records, _ = _read(_write(tmp_path, text), _mapping(delimiter=";"))
    assert [(r.line, r.local_id) for r in records] == [(3, "1")]
    with pytest.raises(InputError, match="declares the delimiter ';'"):
        _read(_write(tmp_path, text), _mapping(delimiter=","))


# --- the same people in two conventions ----------------------------------------------------

# A SQL Server export: pipes, UTF-8, split names, datetimes, NHS Data Dictionary sex codes,
# NULL for a missing value, the sqlcmd rule and row count.
SQL_SERVER = (
    "PatientID|NHSNumber|Forename|MiddleNames|Surname|DateOfBirth|Gender|Postcode|Ward\n"
    "---------|---------|--------|-----------|-------|-----------|------|--------|----\n"
    f"P1|{NHS_A}|Seán|NULL|O'Brien|1980-02-01 00:00:00.000|1|BA1 1AA|W1\n"
    f"P2|{NHS_B}|Zoë|NULL|Smith-Jones|1975-12-31 00:00:00.000|2|SW1A 1AA|W2\n"
    f"P3|{NHS_C}|Mary-Ann|NULL|McDonald|2001-07-04 00:00:00.000|2|GY1 1AA|W3\n"
    "\n(3 rows affected)\n"
)
SQL_SERVER_MAPPING = {
    "source": {"format": "csv", "encoding": "utf-8", "delimiter": "|"},
    "record": {"id": "PatientID"},
    "identifiers": {
        "nhs_number": "NHSNumber",
        "given_name": "Forename",
        "middle_names": "MiddleNames",
        "family_name": "Surname",
        "date_of_birth": {"column": "DateOfBirth", "formats": ["%Y-%m-%d"]},
        "sex": "Gender",
        "postcode": "Postcode",
    },
    "payload": {"columns": ["Ward"]},
}

# A hospital's Excel "Save as CSV" (cp1252): one name column, d/m/yyyy h:mm dates, NHS
# numbers kept as text with an apostrophe, words for sex, postcodes as typed, CRLF.
EXCEL = (
    "Hosp No,NHS Number,Patient Name,D.O.B,Gender,Post Code,Ward\r\n"
    f'H1,\'{_spaced(NHS_A)},"O’BRIEN, Mr Seán",1/2/1980 0:00,Male,ba11aa,W1\r\n'
    f'H2,\'{_spaced(NHS_B)},"SMITH JONES, Zoe",31/12/1975 0:00,Female,sw1a  1aa,W2\r\n'
    f'H3,{NHS_C}.0,"MC DONALD, Mary Ann (Miss)",4/7/2001 0:00,Female,gy11aa,W3\r\n'
)
EXCEL_MAPPING = {
    "source": {"format": "csv", "encoding": "cp1252"},
    "record": {"id": "Hosp No"},
    "identifiers": {
        "nhs_number": "NHS Number",
        "full_name": {"column": "Patient Name", "layout": "FAMILY, GIVEN"},
        "date_of_birth": {"column": "D.O.B", "formats": ["%d/%m/%Y"]},
        "sex": "Gender",
        "postcode": "Post Code",
    },
    "payload": {"columns": ["Ward"]},
}


def test_the_same_people_in_two_conventions_give_the_same_tokens(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    sql, sql_report = _read(_write(tmp_path / "a", SQL_SERVER), SQL_SERVER_MAPPING)
    excel, excel_report = _read(_write(tmp_path / "b", EXCEL, encoding="cp1252"), EXCEL_MAPPING)
    assert (sql_report.rows_rejected, excel_report.rows_rejected) == (0, 0)
    assert len(sql) == len(excel) == 3

    def identity(record: NormalisedRecord) -> NormalisedRecord:
        return record._replace(line=0, local_id="", payload=())

    assert [identity(r) for r in sql] == [identity(r) for r in excel]
    assert (sql[0].given_name, sql[0].family_name, sql[0].sex) == ("SEAN", "OBRIEN", "M")
    assert (excel[2].given_name, excel[2].middle_names) == ("MARY", "ANN")
    params = fixed_params("either", ("Ward",))
    tokeniser = Tokeniser(params)
    for left, right in zip(sql, excel, strict=True):
        tokens = tokeniser.tokens(left)
        assert tokens == tokeniser.tokens(right)
        assert all(token is not None for token in tokens[:3])


def test_check_on_a_sql_server_export(tmp_path, capsys):
    data = _write(tmp_path, SQL_SERVER)
    mapping = tmp_path / "mapping.toml"
    mapping.write_text(
        '[source]\nformat = "csv"\ndelimiter = "|"\n[record]\nid = "PatientID"\n'
        '[identifiers]\nnhs_number = "NHSNumber"\ngiven_name = "Forename"\n'
        'middle_names = "MiddleNames"\nfamily_name = "Surname"\n'
        'date_of_birth = { column = "DateOfBirth", formats = ["%Y-%m-%d"] }\n'
        'sex = "Gender"\npostcode = "Postcode"\n',
        encoding="utf-8",
    )
    out = tmp_path / "report.json"
    args = ["check", str(data), "--mapping", str(mapping), "--json", str(out)]
    assert run_cli(cli, "tessera-sdk", args) == 0
    printed = capsys.readouterr().out
    assert "3 rows read, 3 used, 0 rejected, 2 lines that are not records skipped" in printed
    report = json.loads(out.read_text(encoding="utf-8"))
    assert (report["rows_rejected"], report["rows_skipped"]) == (0, 2)
    assert report["grade"] == "Gold"
    middle = next(f for f in report["fields"] if f["field"] == "middle_names")
    assert (middle["valid"], middle["placeholder"], middle["invalid"]) == (1, 2, 0)
    for value in (NHS_A, NHS_B, "OBRIEN", "O'Brien", "1980-02-01"):
        assert value not in printed
        assert value not in out.read_text(encoding="utf-8")


def test_a_report_title_above_the_header_is_skipped(tmp_path):
    """A clinical system's report export: name, run date and count above the header."""
    text = (
        '"Patients at risk","Practice report"\n'
        '"Run date","24-Nov-2026 10:00"\n'
        '"Population count","2"\n'
        "\n" + _lines(HEADER, _row("1"), _row("2"))
    )
    records, report = _read(_write(tmp_path, text), _mapping())
    assert [(r.line, r.local_id) for r in records] == [(6, "1"), (7, "2")]
    assert (report.rows_rejected, report.rows_skipped) == (0, 3)


def test_a_header_without_a_mapped_column_is_still_refused(tmp_path):
    text = _lines(HEADER[:-2] + ["WARD"], _row("1")[:-2] + ["W1"])
    with pytest.raises(InputError, match="mapped columns not in the header: 'POSTCODE'"):
        _read(_write(tmp_path, text), _mapping())
    with pytest.raises(InputError, match="none of the mapped columns"):
        _read(_write(tmp_path, _lines(HEADER, _row("1"), sep=";")), _mapping())


@pytest.mark.parametrize(
    ("encoding", "written"), [("ANSI", "cp1252"), ("Unicode", "utf-16"), ("UTF-8-BOM", "utf-8-sig")]
)
def test_encodings_by_the_names_windows_tools_give_them(tmp_path, encoding, written):
    text = _lines(HEADER, _row("1", name="Zoë"), end="\r\n")
    records, _ = _read(_write(tmp_path, text, encoding=written), _mapping(encoding=encoding))
    assert records[0].given_name == "ZOE"


# --- full names: split at spaces before hyphens, suffixes dropped wherever they stand ------


@pytest.mark.parametrize(
    ("raw", "layout"),
    [
        ("Zoë Smith-Jones", "GIVEN FAMILY"),
        ("Zoë Smith - Jones", "GIVEN FAMILY"),
        ("Smith-Jones Zoe", "FAMILY GIVEN"),
        ("Smith-Jones, Zoe", "FAMILY, GIVEN"),
        ("Smith-Jones Zoe", "FAMILY, GIVEN"),
        ("Ms Zoë Smith–Jones", "GIVEN FAMILY"),
    ],
)
def test_a_hyphenated_family_name_in_a_full_name_column(raw, layout):
    assert split_full_name(raw, layout) == (("ZOE", None), "SMITH JONES")
    assert check_family_name("Smith-Jones") == "SMITH JONES"


@pytest.mark.parametrize(
    ("raw", "layout"),
    [
        ("SMITH, John Jr", "FAMILY, GIVEN"),
        ("SMITH JR, John", "FAMILY, GIVEN"),
        ("John Smith Jr", "GIVEN FAMILY"),
        ("John Smith III", "GIVEN FAMILY"),
        ("SMITH John Jnr", "FAMILY GIVEN"),
        ("SMITH Jr John", "FAMILY GIVEN"),
        ("Mr John Smith Snr", "GIVEN FAMILY"),
    ],
)
def test_a_suffix_after_the_given_names(raw, layout):
    assert split_full_name(raw, layout) == (("JOHN", None), "SMITH")
