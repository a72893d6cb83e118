"""Defects found on real-world extracts, each pinned: names, symbols, dates, payload, FHIR.

Every value here is made up; NHS numbers are from the 999 test range.
"""

from __future__ import annotations

import json
from datetime import date

import pytest

from client_sdk.cli import cli
from client_sdk.mapping import parse_mapping
from client_sdk.normalise.dates import DateParser
from client_sdk.normalise.defect import Defect
from client_sdk.normalise.names import (
    check_family_name,
    check_given_names,
    check_middle_names,
    split_full_name,
)
from client_sdk.normalise.placeholders import payload_value
from client_sdk.normalise.text import check_address_line, check_other_id
from client_sdk.normalise.transliterate import drop_symbols
from client_sdk.pipeline import iter_records, record_blocks
from client_sdk.quality import QualityCollector
from keys.cliutil import run_cli

TODAY = date(2026, 11, 24)

# --- 1. a full name gives what separate given and family columns give ----------------------

PEOPLE = [
    ("Zoë", "Smith-Jones"),
    ("Seán", "O'Brien"),
    ("Maria", "de la Cruz"),
    ("Jan", "van der Berg"),
    ("Mary-Ann", "McDonald"),
    ("Łukasz", "Wójcik-Nowak"),
    ("Anne", "Saint John"),
]


@pytest.mark.parametrize(("given", "family"), PEOPLE)
@pytest.mark.parametrize("layout", ["GIVEN FAMILY", "FAMILY GIVEN", "FAMILY, GIVEN"])
def test_a_full_name_splits_as_separate_columns_do(given, family, layout):
    raw = {
        "GIVEN FAMILY": f"{given} {family}",
        "FAMILY GIVEN": f"{family} {given}",
        "FAMILY, GIVEN": f"{family.upper()}, {given}",
    }[layout]
    assert split_full_name(raw, layout) == (check_given_names(given), check_family_name(family))


# --- 2. suffixes are dropped wherever they stand ---------------------------------------------


@pytest.mark.parametrize("raw", ["John Jr", "John Jnr.", "Jr John", "John III", "John PhD"])
def test_a_suffix_in_a_given_name_column_is_dropped(raw):
    assert check_given_names(raw) == ("JOHN", None)


def test_a_suffix_among_middle_names_is_dropped():
    assert check_given_names("John Paul Jr") == ("JOHN", "PAUL")
    assert check_middle_names("Paul Jr") == "PAUL"


@pytest.mark.parametrize(
    ("raw", "layout", "expected"),
    [
        # Honours and degrees that are also names stay when they are the name.
        ("Long Ma", "GIVEN FAMILY", (("LONG", None), "MA")),
        ("Wei Ma MA", "GIVEN FAMILY", (("WEI", None), "MA")),
        ("Junior Smith", "GIVEN FAMILY", (("JUNIOR", None), "SMITH")),
        ("Md Abdul Karim", "GIVEN FAMILY", (("MD", "ABDUL"), "KARIM")),
    ],
)
def test_suffixes_that_are_also_names(raw, layout, expected):
    assert split_full_name(raw, layout) == expected
    assert check_given_names("Junior") == ("JUNIOR", None)


# --- 3. bracketed notes and titles -----------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "layout"),
    [
        ("SMITH (DECEASED), John", "FAMILY, GIVEN"),
        ("SMITH, John (DECEASED)", "FAMILY, GIVEN"),
        ("John Smith (deceased)", "GIVEN FAMILY"),
        ("SMITH (nee Jones) John", "FAMILY GIVEN"),
        ("SMITH [MR] John", "FAMILY GIVEN"),
        ("John (Jack) Smith", "GIVEN FAMILY"),
        ("Mstr John Smith", "GIVEN FAMILY"),
        ("Mast. John Smith", "GIVEN FAMILY"),
        ("SMITH, Master John", "FAMILY, GIVEN"),
        ("SMITH *DECEASED*, John", "FAMILY, GIVEN"),
        ("John Smith (unclosed", "GIVEN FAMILY"),
    ],
)
def test_bracketed_notes_and_titles_are_dropped(raw, layout):
    assert split_full_name(raw, layout) == (("JOHN", None), "SMITH")


@pytest.mark.parametrize(
    "raw", ["SMITH (DECEASED)", "Smith (Mrs)", "Smith (née Jones)", "SMITH DECD"]
)
def test_bracketed_notes_in_a_family_name_column(raw):
    assert check_family_name(raw) == "SMITH"


def test_a_name_only_in_brackets_is_read():
    assert check_family_name("(Unknown)") is Defect.PLACEHOLDER
    assert check_family_name("(Smith)") == "SMITH"


# --- 4. symbols never become words -----------------------------------------------------------


@pytest.mark.parametrize("symbol", ["😀", "👍🏽", "🇬🇧", "™", "©", "£", "€", "∑", "°", "\ue000"])
def test_symbols_are_dropped_not_transliterated(symbol):
    assert check_family_name(f"Smith{symbol}") == "SMITH"
    assert check_given_names(f"{symbol} Zoë {symbol}") == ("ZOE", None)
    assert split_full_name(f"Zoë {symbol} Smith-Jones", "GIVEN FAMILY") == (
        ("ZOE", None),
        "SMITH JONES",
    )
    assert check_address_line(f"12 High St {symbol}") == "12 HIGH STREET"
    assert check_other_id(f"AB{symbol}123") == "AB123"


def test_a_name_of_symbols_only_is_missing():
    assert check_family_name("😀😀") is Defect.MISSING
    assert drop_symbols("O’Brien") == "O’Brien"  # punctuation is not a symbol


# --- 5. dates without separators are read at their full width --------------------------------


@pytest.mark.parametrize(
    ("formats", "raw", "expected"),
    [
        (["%Y%m%d"], "1980111", Defect.INVALID),  # 1 November or 11 January?
        (["%Y%m%d"], "19801101", "1980-11-01"),
        (["%Y%m%d"], "19800111", "1980-01-11"),
        (["%Y%m%d"], "19801101 00:00:00", "1980-11-01"),
        (["%d%m%Y"], "1111980", Defect.INVALID),
        (["%d%m%Y"], "01111980", "1980-11-01"),
        (["%d%m%y"], "11180", Defect.INVALID),
        (["%Y%m%d%H%M%S"], "1980110112000", Defect.INVALID),
        (["%Y%m%d%H%M%S"], "19801101120000", "1980-11-01"),
        (["%d/%m/%Y"], "1/11/1980", "1980-11-01"),  # separators: one digit is fine
        (["%Y%m%d", "%d/%m/%Y"], "1980111", Defect.INVALID),
    ],
)
def test_formats_without_separators_need_their_full_width(formats, raw, expected):
    assert DateParser(formats, today=TODAY).check(raw) == expected


# --- 6. null markers in payload columns leave as missing values -------------------------------


@pytest.mark.parametrize(
    "raw", ["NULL", "null", "(null)", "<NULL>", "N/A", "#N/A", "NA", "NaN", " "]
)
def test_null_markers_in_a_payload_cell_are_none(raw):
    assert payload_value(raw) is None


@pytest.mark.parametrize("raw", ["0", "3", "Not stated", "Unknown", "None", "Refused", " W1 "])
def test_answers_in_a_payload_cell_are_data(raw):
    assert payload_value(raw) == raw.strip()


def test_payload_nulls_through_the_pipeline(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text(
        "ID,SURNAME,AE,ETHNICITY\n1,Smith,NULL,Not stated\n2,Jones,3,N/A\n3,Brown,,A\n",
        encoding="utf-8",
    )
    mapping = parse_mapping(
        {
            "source": {"format": "csv"},
            "record": {"id": "ID"},
            "identifiers": {"family_name": "SURNAME"},
            "payload": {"columns": ["AE", "ETHNICITY"]},
        }
    )
    records = list(iter_records(path, mapping, today=TODAY))
    assert [r.payload for r in records] == [(None, "Not stated"), ("3", None), (None, "A")]


# --- 7. FHIR: the run's "today", and positions named for what they count ---------------------

FHIR_MAPPING = parse_mapping({"source": {"format": "fhir"}, "record": {"id": "id"}})


def _name_changed_in_2022():
    return {
        "resourceType": "Patient",
        "id": "p1",
        "name": [
            {"use": "official", "family": "Old", "period": {"end": "2022-01-01"}},
            {"use": "official", "family": "New", "period": {"start": "2022-01-01"}},
        ],
    }


def test_iter_records_judges_fhir_periods_by_its_today(tmp_path):
    path = tmp_path / "p.ndjson"
    path.write_text(json.dumps(_name_changed_in_2022()) + "\n", encoding="utf-8")
    (before,) = iter_records(path, FHIR_MAPPING, today=date(2020, 6, 1))
    (after,) = iter_records(path, FHIR_MAPPING, today=TODAY)
    assert (before.family_name, after.family_name) == ("OLD", "NEW")


def test_record_blocks_judges_fhir_periods_by_its_today(tmp_path):
    path = tmp_path / "p.ndjson"
    path.write_text(json.dumps(_name_changed_in_2022()) + "\n", encoding="utf-8")
    blocks = record_blocks(path, FHIR_MAPPING, report=QualityCollector(), today=date(2020, 6, 1))
    names = [r.family_name for block in blocks.blocks for r in blocks.prepare(block)[0]]
    assert names == ["OLD"]


def _check(tmp_path, name, text, capsys):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    mapping = tmp_path / "m.toml"
    mapping.write_text('[source]\nformat = "fhir"\n[record]\nid = "id"\n', encoding="utf-8")
    out = tmp_path / "q.json"
    code = run_cli(
        cli, "tessera-sdk", ["check", str(path), "--mapping", str(mapping), "--json", str(out)]
    )
    assert code == 0
    return capsys.readouterr().out, json.loads(out.read_text(encoding="utf-8"))


def test_check_names_a_bundle_problem_by_its_entry(tmp_path, capsys):
    patient = {"resourceType": "Patient", "id": "a", "birthDate": "1980-02-31"}
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": patient}, "not an entry"],
    }
    printed, report = _check(tmp_path, "b.json", json.dumps(bundle, indent=2), capsys)
    assert "entry 2: bundle entry is not an object" in printed
    assert "entry 1, birthDate: invalid date_of_birth" in printed
    assert "line 2" not in printed
    assert report["position"] == "entry"
    assert report["problems"] == [
        {"line": 2, "column": None, "reason": "bundle entry is not an object"}
    ]


def test_check_names_an_ndjson_problem_by_its_line(tmp_path, capsys):
    text = json.dumps({"resourceType": "Patient", "id": "a"}) + "\n{broken\n"
    printed, report = _check(tmp_path, "p.ndjson", text, capsys)
    assert "line 2" in printed
    assert report["position"] == "line"
