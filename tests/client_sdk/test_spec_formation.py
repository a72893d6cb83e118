"""The spec linter's checks that ``tokenise`` shares (issue 19.6) and key formation (17.1).

Driven through the installed ``tessera-sdk spec lint`` and ``tokenise`` as subprocesses.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from client_sdk.speclint import (
    MIN_FORMING_SHARE,
    STATIC_MIN_VALUES,
    formation_failure,
    key_formation,
    static_problems,
)
from keys.spec import default_spec, parse_spec
from tests.client_sdk.sdk_cli import sdk, tokenise_args
from tests.support.tokenise_world import Org, make_orgs

MAPPING = """
[source]
format = "csv"
[record]
id = "ID"
[identifiers]
nhs_number = "NHS"
given_name = "GIVEN"
family_name = "FAMILY"
date_of_birth = { column = "DOB", formats = ["%Y-%m-%d"] }
sex = "SEX"
postcode = "POSTCODE"
"""
_GIVEN = ["Alice", "Bob", "Carol", "David", "Emma", "Frank", "Grace", "Harry", "Irene", "Jack"]
_NHS = ["9434765919", "9434765870", "9434765862", "9434765854"]


def _extract(tmp_path: Path, *, nhs_numbers: int = 0) -> tuple[Path, Path]:
    """40 people; the first ``nhs_numbers`` of them have an NHS number."""
    rows = ["ID,NHS,GIVEN,FAMILY,DOB,SEX,POSTCODE"]
    for i in range(40):
        nhs = _NHS[i] if i < nhs_numbers else ""
        rows.append(
            f"{i + 1},{nhs},{_GIVEN[i % 10]},Family{chr(65 + i)},{1940 + i}-0{1 + i % 9}-1{i % 9},"
            f"{'MF'[i % 2]},BA{1 + i % 9} {i % 10}AB"
        )
    data = tmp_path / "extract.csv"
    data.write_text("\n".join(rows) + "\n")
    mapping = tmp_path / "mapping.toml"
    mapping.write_text(MAPPING)
    return data, mapping


@pytest.fixture(scope="module")
def org(tmp_path_factory: pytest.TempPathFactory) -> Org:
    return make_orgs(tmp_path_factory.mktemp("orgs"), ["trust"])["trust"]


SEX_ONLY = 'name = "weak"\n[[match_keys]]\nname = "sex_only"\nfields = ["sex"]\n'


def test_tokenise_refuses_a_spec_the_linter_refuses(org: Org, tmp_path: Path) -> None:
    data, mapping = _extract(tmp_path, nhs_numbers=4)
    spec = tmp_path / "weak.toml"
    spec.write_text(
        SEX_ONLY + '[[match_keys]]\nname = "year_district"\n'
        'fields = ["date_of_birth:year", "postcode:district"]\n'
    )
    out = tmp_path / "weak.batch"
    result = sdk(*tokenise_args(org, data, mapping, out, dataset="weak"), "--spec", spec)
    assert result.returncode == 7
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("refused: match key 'sex_only' is too common to hide")
    assert lines[1].startswith("refused: match key 'year_district' is too common to hide")
    assert len(lines) == 3 and "spec linter refuses 2 match key(s)" in lines[2]
    assert not out.exists()
    lint = sdk("spec", "lint", data, "--mapping", mapping, "--spec", spec)
    assert lint.returncode == 7
    assert lint.stdout.startswith("refused   sex_only")


def test_the_default_spec_passes_the_static_checks() -> None:
    assert static_problems(default_spec()) == []


def test_few_valued_fields_are_refused_below_the_stated_bound() -> None:
    refused = parse_spec(
        {"name": "s", "match_keys": [{"name": "k", "fields": ["sex", "date_of_birth"]}]}
    )
    assert len(static_problems(refused)) == 1  # 2 × 150 × 366 values < STATIC_MIN_VALUES
    kept = parse_spec(
        {
            "name": "s",
            "match_keys": [{"name": "k", "fields": ["date_of_birth", "postcode:district"]}],
        }
    )
    assert static_problems(kept) == []
    assert 150 * 366 * 3_000 >= STATIC_MIN_VALUES


def test_lint_fails_when_the_default_specs_strongest_keys_never_form(tmp_path: Path) -> None:
    data, mapping = _extract(tmp_path)  # no NHS numbers at all
    result = sdk("spec", "lint", data, "--mapping", mapping)
    assert result.returncode == 7, result.stdout + result.stderr
    warnings = [line for line in result.stdout.splitlines() if line.startswith("warning")]
    assert warnings == [
        "warning   match key 'nhs_dob' never forms on these 40 records: no record has nhs_number",
        "warning   match key 'nhs_family_initial' never forms on these 40 records: no record "
        "has nhs_number",
    ]
    assert "strongest match key 'nhs_dob' forms for 0.0% of records" in result.stderr


def test_lint_names_a_rare_key_but_passes_when_the_strongest_forms(tmp_path: Path) -> None:
    data, mapping = _extract(tmp_path, nhs_numbers=3)  # 3 of 40: 7.5%
    spec = tmp_path / "spec.toml"
    spec.write_text(
        'name = "s"\n[[match_keys]]\nname = "names_dob"\n'
        'fields = ["given_name_key", "family_name", "date_of_birth"]\n'
        '[[match_keys]]\nname = "nhs_dob"\nfields = ["nhs_number", "date_of_birth"]\n'
    )
    result = sdk("spec", "lint", data, "--mapping", mapping, "--spec", spec)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (
        "warning   match key 'nhs_dob' forms for only 3 of 40 records (7.5%, fewer than 10%)"
        in result.stdout
    )


def test_lint_fails_when_most_keys_cannot_form(tmp_path: Path) -> None:
    data, mapping = _extract(tmp_path)
    spec = tmp_path / "spec.toml"
    spec.write_text(
        'name = "s"\n[[match_keys]]\nname = "names_dob"\n'
        'fields = ["given_name_key", "family_name", "date_of_birth"]\n'
        '[[match_keys]]\nname = "nhs_dob"\nfields = ["nhs_number", "date_of_birth"]\n'
        '[[match_keys]]\nname = "nhs_sex"\nfields = ["nhs_number", "sex"]\n'
    )
    result = sdk("spec", "lint", data, "--mapping", mapping, "--spec", spec)
    assert result.returncode == 7
    assert "2 of the spec's 3 match keys form for fewer than 10% of records" in result.stderr


def test_tokenise_warns_per_key_that_never_forms(org: Org, tmp_path: Path) -> None:
    data, mapping = _extract(tmp_path)
    out = tmp_path / "no-nhs.batch"
    result = sdk(*tokenise_args(org, data, mapping, out, dataset="no-nhs"))
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        "warning: match key 'nhs_dob' never forms on these 40 records: no record has nhs_number",
        "warning: match key 'nhs_family_initial' never forms on these 40 records: no record "
        "has nhs_number",
        "warning: the spec's strongest match key 'nhs_dob' forms for 0.0% of records (at least "
        "10% needed): few records can link",
    ]
    assert out.exists()


def test_formation_share_is_the_documented_one() -> None:
    spec = default_spec()
    counts = dict.fromkeys(spec.key_names, 100)
    counts["nhs_dob"] = 9
    formations = key_formation(spec, counts, records=100)
    assert [f.name for f in formations if f.rare] == ["nhs_dob"]
    assert MIN_FORMING_SHARE == 0.10
    assert formation_failure(formations) is not None  # the strongest key
    counts["nhs_dob"] = 10
    assert formation_failure(key_formation(spec, counts, records=100)) is None
