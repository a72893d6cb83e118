"""Linkage specs: validation with every problem at once, content hash, linter, CLI."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from client_sdk.cli import cli
from client_sdk.record import NormalisedRecord
from client_sdk.speclint import lint_spec
from keys.cliutil import run_cli
from keys.errors import SpecError
from keys.spec import (
    PROBABILISTIC_SPEC_NAME,
    LinkageSpec,
    UnorderedFields,
    default_spec,
    load_spec,
    parse_spec,
    shipped_spec_names,
)

# Pinned: changing the shipped spec changes every token of every domain that uses it.
DEFAULT_HASH = "sha256:185193686ea793fe31201a07b84099a907ac2bf7f7f01c0a3cf199d48bce5e67"


def test_default_spec_loads_and_its_hash_is_pinned() -> None:
    spec = default_spec()
    assert spec.name == "uk-health"
    assert spec.key_names[0] == "nhs_dob"
    assert spec.content_hash == DEFAULT_HASH


def test_hash_ignores_labels_but_not_content(tmp_path: Path) -> None:
    spec = default_spec()
    data = tomllib.loads(spec.to_toml())
    assert parse_spec(data).content_hash == spec.content_hash
    data["name"], data["description"] = "renamed", "other words"
    data["match_keys"][0]["description"] = "changed"
    assert parse_spec(data).content_hash == spec.content_hash
    reordered = dict(data, match_keys=[data["match_keys"][1], data["match_keys"][0]])
    assert parse_spec(reordered).content_hash != spec.content_hash
    changed = tomllib.loads(spec.to_toml())
    changed["match_keys"][4]["fields"][0] = "given_name_key:nysiis"
    assert parse_spec(changed).content_hash != spec.content_hash
    # A field written as a table is the same field as its string form.
    path = tmp_path / "s.toml"
    path.write_text(
        'name = "t"\n[[match_keys]]\nname = "a"\n'
        'fields = [{ field = "postcode", transform = "sector" }, "date_of_birth"]\n'
    )
    short = parse_spec(
        {"name": "t", "match_keys": [{"name": "a", "fields": ["postcode:sector", "date_of_birth"]}]}
    )
    assert load_spec(path).content_hash == short.content_hash


def test_every_problem_is_listed_at_once() -> None:
    bad = {
        "name": "bad",
        "colour": "blue",
        "match_keys": [
            {"name": "Bad Name", "fields": ["nhs_number"]},
            {"name": "a", "fields": ["shoe_size", "postcode:soundex"]},
            {"name": "a", "fields": ["date_of_birth:phonetic"]},
            {"name": "c", "fields": []},
            {"name": "d", "fields": ["nhs_number"], "weight": 3},
            {"name": "e", "fields": ["nhs_number"]},
        ],
    }
    with pytest.raises(SpecError) as caught:
        parse_spec(bad, source="bad.toml")
    problems = caught.value.problems
    text = str(caught.value)
    assert text.startswith("bad.toml: invalid linkage spec:")
    for fragment in (
        "unknown top-level entries ['colour']",
        "match key 1: 'name' must be lower-case",
        "unknown field 'shoe_size'",
        "transform 'soundex' does not apply to 'postcode'",
        "match key 3 (a): duplicate name",
        "unknown transform 'phonetic'",
        "match key 4 (c): 'fields' must be a non-empty list",
        "match key 5 (d): unknown entries ['weight']",
        "match key 6 (e): same fields as d",
    ):
        assert any(fragment in p for p in problems), fragment
    assert len(problems) == 9


def test_an_unordered_group_in_either_form_and_order_is_one_field(tmp_path: Path) -> None:
    def spec(*fields: object) -> LinkageSpec:
        return parse_spec(
            {"name": "t", "match_keys": [{"name": "a", "fields": [*fields, "date_of_birth"]}]}
        )

    short = spec("{given_name:nickname, family_name:nickname}")
    group = short.match_keys[0].fields[0]
    assert isinstance(group, UnorderedFields)
    assert group.label() == "{family_name:nickname, given_name:nickname}"
    assert [f.label() for f in short.match_keys[0].leaves] == [
        "family_name:nickname",
        "given_name:nickname",
        "date_of_birth",
    ]
    for same in (
        spec("{ family_name:nickname ,given_name:nickname }"),
        spec({"unordered": ["family_name:nickname", "given_name:nickname"]}),
        spec(
            {
                "unordered": [
                    {"field": "given_name", "transform": "nickname"},
                    "family_name:nickname",
                ]
            }
        ),
        parse_spec(tomllib.loads(short.to_toml())),
    ):
        assert same.content_hash == short.content_hash
    assert spec("{given_name, family_name}").content_hash != short.content_hash
    # Unordered is not the same key as the same fields in order.
    ordered = spec("given_name:nickname", "family_name:nickname")
    assert ordered.content_hash != short.content_hash
    assert short.canonical()["match_keys"][0]["fields"][0] == {
        "unordered": [
            {"field": "family_name", "transform": "nickname"},
            {"field": "given_name", "transform": "nickname"},
        ]
    }


def test_a_bad_unordered_group_is_refused_with_every_problem() -> None:
    bad = {
        "name": "bad",
        "match_keys": [
            {"name": "one", "fields": ["{given_name}"]},
            {"name": "open", "fields": ["{given_name, family_name"]},
            {"name": "twice", "fields": ["{given_name, given_name}"]},
            {"name": "nested", "fields": [{"unordered": ["sex", {"unordered": ["a", "b"]}]}]},
            {"name": "parts", "fields": ["{shoe_size, postcode:soundex}"]},
            {"name": "extra", "fields": [{"unordered": ["sex", "postcode"], "weight": 1}]},
            {"name": "both", "fields": ["{given_name, family_name}", "family_name"]},
        ],
    }
    with pytest.raises(SpecError) as caught:
        parse_spec(bad, source="bad.toml")
    problems = caught.value.problems
    for fragment in (
        "match key 1 (one) field 1: an unordered group needs at least two fields",
        "match key 2 (open) field 1: an unordered group is written",
        "match key 3 (twice) field 1: a field is listed twice in an unordered group",
        "match key 4 (nested) field 1 part 2: unordered groups do not nest",
        "match key 5 (parts) field 1 part 1: unknown field 'shoe_size'",
        "match key 5 (parts) field 1 part 2: transform 'soundex' does not apply to 'postcode'",
        "match key 6 (extra) field 1: unknown entries ['weight']",
        "match key 7 (both): a field is listed twice",
    ):
        assert any(fragment in p for p in problems), (fragment, problems)
    assert len(problems) == 8


def test_linter_counts_an_unordered_group_as_one_value_in_either_order() -> None:
    spec = parse_spec(
        {
            "name": "pairs",
            "match_keys": [
                {"name": "ordered", "fields": ["given_name", "family_name", "date_of_birth"]},
                {"name": "unordered", "fields": ["{given_name, family_name}", "date_of_birth"]},
            ],
        }
    )
    people = _population(1000)
    # Each person again with given and family names swapped: a second, different record
    # to the ordered key, the same value to the unordered one.
    swapped = [r._replace(given_name=r.family_name, family_name=r.given_name) for r in people]
    verdicts = {v.name: v for v in lint_spec(spec, people + swapped)}
    assert verdicts["ordered"].distinct_fraction == 1.0
    assert verdicts["ordered"].verdict == "ok"
    assert verdicts["unordered"].distinct_fraction == 0.5
    assert verdicts["unordered"].largest_group == 2
    assert verdicts["unordered"].verdict == "refused"


def test_unreadable_or_invalid_toml_is_a_spec_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot read"):
        load_spec(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("name = \n")
    with pytest.raises(SpecError, match="not valid TOML"):
        load_spec(broken)
    with pytest.raises(SpecError, match="no shipped spec"):
        default_spec("../etc")


def _population(n: int) -> list[NormalisedRecord]:
    family = [f"FAM{i}" for i in range(40)]
    return [
        NormalisedRecord(
            line=i + 2,
            local_id=str(i),
            given_name=f"G{i % 300}",
            given_name_key=f"G{i % 300}",
            family_name=family[i % len(family)],
            date_of_birth=f"{1940 + i % 60}-{1 + i % 12:02d}-{1 + i % 28:02d}",
            sex="M" if i % 2 else "F",
            postcode=f"BA{i % 30} {i % 9}AA",
        )
        for i in range(n)
    ]


def test_linter_refuses_a_key_too_common_to_hide() -> None:
    spec = parse_spec(
        {
            "name": "risky",
            "match_keys": [
                {"name": "names_dob", "fields": ["given_name_key", "family_name", "date_of_birth"]},
                {"name": "surname_sex", "fields": ["family_name", "sex"]},
                {"name": "nhs", "fields": ["nhs_number"]},
            ],
        }
    )
    verdicts = {v.name: v for v in lint_spec(spec, _population(2000))}
    assert verdicts["names_dob"].verdict == "ok"
    refused = verdicts["surname_sex"]
    assert refused.verdict == "refused"
    assert refused.distinct_fraction < 0.1
    assert "frequency" in refused.reason
    assert "FAM" not in refused.reason
    assert verdicts["nhs"].verdict == "unjudged"  # never present: cannot judge
    small = {v.name: v for v in lint_spec(spec, _population(50))}
    assert small["surname_sex"].verdict == "unjudged"


def test_cli_spec_hash_and_show(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["spec", "hash"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == DEFAULT_HASH
    shown = runner.invoke(cli, ["spec", "show"])
    assert shown.exit_code == 0
    assert shown.output.splitlines()[0] == f"# content hash: {DEFAULT_HASH}"
    path = tmp_path / "copy.toml"
    path.write_text(shown.output)
    assert load_spec(path).content_hash == DEFAULT_HASH


def test_cli_invalid_spec_is_one_line_and_exit_7(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('name = "x"\n[[match_keys]]\nname = "k"\nfields = ["nope", "sex:year"]\n')
    code = run_cli(cli, "tessera-sdk", ["spec", "hash", "--spec", str(path)])
    err = capsys.readouterr().err
    assert code == 7
    assert len(err.strip().splitlines()) == 1
    assert "unknown field 'nope'" in err and "'year' does not apply to 'sex'" in err


def test_cli_spec_lint_refuses_a_common_key_on_the_orgs_own_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = ["ID,GIVEN,FAMILY,DOB,SEX,POSTCODE"]
    for i in range(1500):
        rows.append(
            f"{i},Given{chr(65 + i % 26)}{chr(65 + i // 26 % 26)},Family{chr(65 + i % 20)},"
            f"{1940 + i % 70}-{1 + i % 12:02d}-{1 + i % 28:02d},{'MF'[i % 2]},"
            f"BA{1 + i % 9} {i % 10}AB"
        )
    data = tmp_path / "list.csv"
    data.write_text("\n".join(rows) + "\n")
    mapping = tmp_path / "m.toml"
    mapping.write_text(
        '[source]\nformat = "csv"\n[record]\nid = "ID"\n[identifiers]\n'
        'given_name = "GIVEN"\nfamily_name = "FAMILY"\n'
        'date_of_birth = { column = "DOB", formats = ["%Y-%m-%d"] }\n'
        'sex = "SEX"\npostcode = "POSTCODE"\n'
    )
    risky = tmp_path / "risky.toml"
    risky.write_text(
        'name = "risky"\n'
        '[[match_keys]]\nname = "names_dob_postcode"\n'
        'fields = ["given_name_key", "family_name", "date_of_birth", "postcode"]\n'
        '[[match_keys]]\nname = "surname_sex"\nfields = ["family_name", "sex"]\n'
    )
    code = run_cli(
        cli,
        "tessera-sdk",
        ["spec", "lint", str(data), "--mapping", str(mapping), "--spec", str(risky)],
    )
    captured = capsys.readouterr()
    assert code == 7
    assert "refused" in captured.out and "surname_sex" in captured.err
    assert "too common to hide" in captured.err
    assert "FAMILYA" not in (captured.out + captured.err).upper()  # no value is shown
    names_only = tmp_path / "names.toml"
    names_only.write_text(risky.read_text().split('[[match_keys]]\nname = "surname_sex"')[0])
    ok = run_cli(
        cli,
        "tessera-sdk",
        ["spec", "lint", str(data), "--mapping", str(mapping), "--spec", str(names_only)],
    )
    assert ok == 0, capsys.readouterr()


# --- blocking keys and comparisons (the probabilistic stage) ---------------------------


def _evidence_spec(**extra: object) -> dict[str, object]:
    data: dict[str, object] = {
        "name": "t",
        "match_keys": [{"name": "nhs_dob", "fields": ["nhs_number", "date_of_birth"]}],
        "blocking_keys": [{"name": "dob", "fields": ["date_of_birth"]}],
        "comparisons": [
            {"name": "given", "field": "given_name", "levels": ["exact", "nysiis", "initial"]},
            {"name": "dob", "field": "date_of_birth", "levels": ["exact", "one_digit"]},
        ],
    }
    data.update(extra)
    return data


def test_blocking_keys_and_comparisons_parse_and_round_trip() -> None:
    spec = parse_spec(_evidence_spec())
    assert [b.name for b in spec.blocking_keys] == ["dob"]
    assert spec.comparisons[0].levels == ("exact", "nysiis", "initial")
    # the date of birth comparison is not derived under the date of birth block
    assert spec.comparisons_under(0) == (0,)
    assert [(c.block, c.comparison, c.level) for c in spec.evidence_columns] == [
        (0, 0, 0),
        (0, 0, 1),
        (0, 0, 2),
    ]
    assert parse_spec(tomllib.loads(spec.to_toml())) == spec


def test_the_hash_covers_blocking_keys_and_comparisons_but_not_their_descriptions() -> None:
    base = parse_spec(_evidence_spec())
    without = parse_spec(
        {k: v for k, v in _evidence_spec().items() if k not in ("blocking_keys", "comparisons")}
    )
    assert without.canonical()["format"] == 1  # a spec without evidence keeps its old hash
    assert base.content_hash != without.content_hash
    levels = _evidence_spec(
        comparisons=[{"name": "given", "field": "given_name", "levels": ["exact", "initial"]}]
    )
    assert parse_spec(levels).content_hash != base.content_hash
    described = _evidence_spec(
        blocking_keys=[{"name": "dob", "fields": ["date_of_birth"], "description": "x"}]
    )
    assert parse_spec(described).content_hash == base.content_hash


def test_bad_comparisons_are_all_reported_at_once() -> None:
    data = _evidence_spec(
        comparisons=[
            {"name": "given", "field": "given_name", "levels": ["exact", "sector"]},
            {"name": "given", "field": "postcode", "levels": ["exact"]},
            {"name": "x", "field": "nhs_number", "levels": []},
            {"name": "y", "field": "shoe_size", "levels": ["exact", "exact"]},
        ]
    )
    with pytest.raises(SpecError) as info:
        parse_spec(data)
    text = str(info.value)
    assert "level 'sector' does not apply to 'given_name'" in text
    assert "duplicate name" in text
    assert "'levels' must be a list" in text
    assert "unknown field 'shoe_size'" in text
    assert "a level is listed twice" in text


def test_blocking_keys_need_comparisons_and_their_own_names() -> None:
    with pytest.raises(SpecError, match="come together"):
        parse_spec(_evidence_spec(comparisons=[]))
    with pytest.raises(SpecError, match="a match key has the same name"):
        parse_spec(_evidence_spec(blocking_keys=[{"name": "nhs_dob", "fields": ["sex"]}]))


def test_the_shipped_spec_has_the_probabilistic_evidence() -> None:
    assert not default_spec().blocking_keys and not default_spec().comparisons  # opt-in
    spec = default_spec(PROBABILISTIC_SPEC_NAME)
    assert [b.name for b in spec.blocking_keys] == ["dob", "nhs", "names_phonetic", "postcode_year"]
    assert [c.name for c in spec.comparisons] == [
        "given",
        "family",
        "dob",
        "postcode",
        "sex",
        "nhs",
    ]


def test_cli_spec_takes_a_shipped_specs_name_as_a_pip_install_needs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """From a pip install the shipped TOML files are inside the package: ``--spec NAME``
    names one; a file of that name in the working directory still wins; an unknown name
    is one line listing the shipped ones."""
    monkeypatch.chdir(tmp_path)
    probabilistic = default_spec(PROBABILISTIC_SPEC_NAME)
    assert run_cli(cli, "tessera-sdk", ["spec", "hash", "--spec", PROBABILISTIC_SPEC_NAME]) == 0
    assert capsys.readouterr().out.strip() == probabilistic.content_hash
    assert probabilistic.content_hash != DEFAULT_HASH
    (tmp_path / PROBABILISTIC_SPEC_NAME).write_text(default_spec().to_toml())
    assert run_cli(cli, "tessera-sdk", ["spec", "hash", "--spec", PROBABILISTIC_SPEC_NAME]) == 0
    assert capsys.readouterr().out.strip() == DEFAULT_HASH  # the file, not the shipped spec
    assert run_cli(cli, "tessera-sdk", ["spec", "hash", "--spec", "uk-helth"]) == 7
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no shipped spec of that name" in err[0]
    assert all(name in err[0] for name in shipped_spec_names())
    assert PROBABILISTIC_SPEC_NAME in shipped_spec_names() and "uk-health" in shipped_spec_names()


def _names_either_order(**extra: object) -> dict[str, object]:
    comparison: dict[str, object] = {
        "name": "given",
        "field": "given_name",
        "with_field": "family_name",
        "levels": ["exact", "initial", "either_order", "either_order_soundex"],
    }
    comparison.update(extra)
    return _evidence_spec(comparisons=[comparison])


def test_a_comparison_of_names_in_either_order_reads_a_second_field() -> None:
    spec = parse_spec(_names_either_order())
    (given,) = spec.comparisons
    assert given.fields == ("given_name", "family_name")
    assert parse_spec(tomllib.loads(spec.to_toml())) == spec
    assert given.canonical()["with_field"] == "family_name"
    other = parse_spec(_names_either_order(with_field="middle_names"))
    assert other.content_hash != spec.content_hash  # the second field is hashed
    plain = parse_spec(_evidence_spec())
    assert all("with_field" not in c.canonical() for c in plain.comparisons)  # old hashes kept


def test_joined_middle_may_stand_before_one_field_levels() -> None:
    """Unlike the other two-field levels: it is a spelling of the same given name, as
    strong as a typing error, and after ``initial`` it would never be the strongest."""
    levels = ["exact", "one_edit", "joined_middle", "nysiis", "initial", "any_given"]
    spec = parse_spec(_names_either_order(with_field="middle_names", levels=levels))
    assert spec.comparisons[0].levels == tuple(levels)
    assert parse_spec(tomllib.loads(spec.to_toml())) == spec


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        ({"with_field": None}, "level 'either_order' needs 'with_field'"),
        ({"with_field": "postcode"}, "'with_field' must be a name field"),
        ({"with_field": "given_name"}, "'with_field' must differ from 'field'"),
        ({"levels": ["exact", "initial"]}, "'with_field' is read only by the levels"),
        ({"levels": ["exact", "either_order", "initial"]}, "come last"),
        ({"levels": ["exact", "any_given"]}, "level 'any_given' reads the middle names"),
        (
            {"levels": ["exact", "joined_middle", "initial"]},
            "level 'joined_middle' reads the middle names",
        ),
        (
            {"with_field": "middle_names", "levels": ["exact", "any_given", "joined_middle"]},
            "come last",
        ),
        (
            {
                "field": "family_name",
                "with_field": "given_name",
                "levels": ["exact", "either_order", "joined"],
            },
            "come last",
        ),
    ],
)
def test_names_in_either_order_are_refused_where_they_make_no_sense(
    extra: dict[str, object], problem: str
) -> None:
    data = _names_either_order(**extra)
    with pytest.raises(SpecError, match=re.escape(problem)):
        parse_spec(data)


@pytest.mark.parametrize(
    ("field", "level"),
    [
        ("given_name", "transpose"),
        ("postcode", "one_word"),
        ("date_of_birth", "either_order"),
        ("postcode", "one_edit"),
        ("nhs_number", "one_edit"),
    ],
)
def test_the_new_levels_apply_only_to_their_fields(field: str, level: str) -> None:
    data = _evidence_spec(comparisons=[{"name": "c", "field": field, "levels": ["exact", level]}])
    with pytest.raises(SpecError, match=f"level '{level}' does not apply to '{field}'"):
        parse_spec(data)
