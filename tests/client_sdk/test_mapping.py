"""Mapping files: the documented shapes load; every problem is listed at once."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from client_sdk.errors import MappingError
from client_sdk.mapping import load_mapping, parse_mapping

DATA = Path(__file__).parent.parent / "data"
DOCS = Path(__file__).parent.parent.parent / "docs"


def test_issue_example_loads(tmp_path):
    path = tmp_path / "mapping.toml"
    path.write_text(
        """
[source]
format = "csv"          # or "fhir"
encoding = "cp1252"
[record]
id = "HOSP_NO"          # the local id: never leaves
[identifiers]
nhs_number = "NHS NUMBER"
full_name = { column = "PATIENT NAME", layout = "FAMILY, GIVEN" }
date_of_birth = { column = "D.O.B", formats = ["%d/%m/%Y"] }
sex = "GENDER"
postcode = "POST CODE"
[payload]
columns = ["AE_ATTENDANCES_12M", "EMERGENCY_ADMISSIONS_12M"]
""",
        encoding="utf-8",
    )
    mapping = load_mapping(path)
    assert mapping.payload_columns == ["AE_ATTENDANCES_12M", "EMERGENCY_ADMISSIONS_12M"]
    assert mapping.column_of("full_name") == "PATIENT NAME"
    assert mapping.date_formats == ["%d/%m/%Y"]
    assert mapping.mapped_fields() == [
        "nhs_number",
        "given_name",
        "middle_names",
        "family_name",
        "date_of_birth",
        "sex",
        "postcode",
    ]


@pytest.mark.parametrize("name", ["hospital_cp1252", "gp_utf8_bom", "messy", "patients_fhir"])
def test_fixture_mappings_load(name):
    load_mapping(DATA / f"{name}.toml")


def test_documented_examples_load():
    text = (DOCS / "mapping.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```toml\n(.*?)```", text, flags=re.DOTALL)
    assert len(blocks) >= 4
    for block in blocks:
        if "[source]" in block:
            import tomllib

            parse_mapping(tomllib.loads(block), source="docs/mapping.md")


def test_every_problem_is_listed_at_once():
    with pytest.raises(MappingError) as caught:
        parse_mapping(
            {
                "source": {"format": "xls", "delimiter": ";;"},
                "record": {},
                "identifiers": {
                    "nhs_number": 3,
                    "sexx": "G",
                    "date_of_birth": {"column": "D", "formats": ["%d/%q/%Y"]},
                    "full_name": {"column": "N", "layout": "GIVEN, FAMILY"},
                },
            },
            source="m.toml",
        )
    problems = caught.value.problems
    joined = "\n".join(problems)
    for where in (
        "source.format",
        "source.delimiter",
        "record.id",
        "identifiers.nhs_number",
        "identifiers.sexx",
        "identifiers.date_of_birth.formats",
        "identifiers.full_name.layout",
    ):
        assert where in joined
    assert len(problems) == 7
    assert str(caught.value).startswith("m.toml: invalid mapping: ")


def test_semantic_problems_are_listed_together():
    with pytest.raises(MappingError) as caught:
        parse_mapping(
            {
                "source": {"format": "csv"},
                "record": {"id": {"system": "https://example.org/id"}},
                "identifiers": {
                    "given_name": "FORENAME",
                    "full_name": {"column": "NAME"},
                    "sex": True,
                },
                "payload": {"columns": ["FORENAME", "X", "X"]},
            }
        )
    joined = "\n".join(caught.value.problems)
    assert "full_name cannot be combined" in joined
    assert "record.id" in joined
    assert "identifiers.sex" in joined
    assert "'FORENAME' is an identifier" in joined
    assert "listed twice" in joined


def test_fhir_mapping_defaults_read_every_standard_element():
    mapping = parse_mapping({"source": {"format": "fhir"}, "record": {"id": "id"}})
    assert mapping.fhir_system("nhs_number") == "https://fhir.nhs.uk/Id/nhs-number"
    assert mapping.mapped_fields() == [
        "nhs_number",
        "given_name",
        "middle_names",
        "family_name",
        "date_of_birth",
        "sex",
        "postcode",
        "address_line",
    ]


def test_fhir_mapping_refuses_columns():
    with pytest.raises(MappingError) as caught:
        parse_mapping(
            {
                "source": {"format": "fhir"},
                "record": {"id": "HOSP_NO"},
                "identifiers": {"sex": "GENDER"},
            }
        )
    assert len(caught.value.problems) == 2


def test_unreadable_and_invalid_toml(tmp_path):
    with pytest.raises(MappingError, match="cannot read"):
        load_mapping(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[source\nformat = ", encoding="utf-8")
    with pytest.raises(MappingError, match="not valid TOML"):
        load_mapping(bad)
