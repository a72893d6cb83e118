"""``tessera-sdk spec lint`` judges the probabilistic stage's evidence (docs/probabilistic.md).

Driven through the installed command as a subprocess, on the synthetic generator's GP
extract: a blocking key whose blocks are too large and a comparison whose token too many
records share inside a block are refused, saying why and without a value; the shipped
probabilistic spec passes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import keys
from client_sdk.mapping import load_mapping
from client_sdk.pipeline import iter_records
from client_sdk.speclint_evidence import lint_evidence
from keys.spec import PROBABILISTIC_SPEC_NAME, resolve_spec
from tessera_synth import generate
from tests.client_sdk.sdk_cli import sdk

PROBABILISTIC = Path(keys.__file__).parent / "specs" / f"{PROBABILISTIC_SPEC_NAME}.toml"

# A strong match key, a blocking key on sex (half the extract in one block) and a
# comparison on the given name's initial (a few dozen records share one inside a block).
LOOSE = """
name = "loose"

[[match_keys]]
name = "nhs_dob"
fields = ["nhs_number", "date_of_birth"]

[[blocking_keys]]
name = "by_sex"
fields = ["sex"]

[[blocking_keys]]
name = "by_dob"
fields = ["date_of_birth"]

[[comparisons]]
name = "given_initial"
field = "given_name"
levels = ["initial"]

[[comparisons]]
name = "nhs"
field = "nhs_number"
levels = ["exact"]
"""


@pytest.fixture(scope="module")
def extract(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("lint-evidence")
    summary = generate(root / "data", persons=1500, seed=7, practices=1, opt_out=False)
    gp = next(d for d in summary.datasets if d.kind == "gp")
    return gp.path, gp.mapping


def _given_names(data: Path, mapping: Path) -> set[str]:
    """The extract's given names, as normalised and in title case (as written)."""
    names = {r.given_name for r in iter_records(data, load_mapping(mapping)) if r.given_name}
    return names | {name.title() for name in names}


def test_the_shipped_probabilistic_spec_passes(extract: tuple[Path, Path]) -> None:
    data, mapping = extract
    result = sdk("spec", "lint", data, "--mapping", mapping, "--spec", PROBABILISTIC)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for name in ("dob", "nhs", "names_phonetic"):
        assert any(line.startswith(f"ok        blocking key {name} ") for line in lines)
    for name in ("given", "family", "dob", "postcode", "sex", "nhs"):
        assert any(line.startswith(f"ok        comparison {name} ") for line in lines)


def test_large_blocks_and_common_comparison_tokens_are_refused_saying_why(
    extract: tuple[Path, Path], tmp_path: Path
) -> None:
    data, mapping = extract
    spec = tmp_path / "loose.toml"
    spec.write_text(LOOSE)
    result = sdk("spec", "lint", data, "--mapping", mapping, "--spec", spec, "--max-shared", "20")
    assert result.returncode == 7
    error = result.stderr.strip()
    assert "\n" not in error and "Traceback" not in error
    assert "blocking key 'by_sex' is refused: its largest block holds" in error
    assert "the broker would compare too many pairs there" in error
    assert "comparison 'given_initial' is refused: one of its tokens is held by" in error
    assert "more than 20: inside the block it tells large groups apart" in error
    assert "'by_dob'" not in error and "comparison 'nhs'" not in error  # these pass
    lines = result.stdout.splitlines()
    assert any(line.startswith("refused   blocking key by_sex ") for line in lines)
    assert any(line.startswith("ok        blocking key by_dob ") for line in lines)
    assert any(line.startswith("ok        comparison nhs ") for line in lines)
    output = result.stdout + result.stderr
    leaked = {name for name in _given_names(data, mapping) if len(name) >= 4 and name in output}
    assert not leaked, "the linter names counts, never a value"


def test_the_limits_are_options(extract: tuple[Path, Path]) -> None:
    data, mapping = extract
    result = sdk(
        "spec", "lint", data, "--mapping", mapping, "--spec", PROBABILISTIC, "--max-block", "1"
    )
    assert result.returncode == 7
    assert "blocking key 'dob' is refused: its largest block holds" in result.stderr
    assert "more than 1:" in result.stderr


def test_a_spec_without_evidence_is_judged_as_before(extract: tuple[Path, Path]) -> None:
    data, mapping = extract
    result = sdk("spec", "lint", data, "--mapping", mapping)
    assert result.returncode == 0, result.stderr
    assert "blocking key" not in result.stdout and "comparison" not in result.stdout


def test_a_day_the_extract_assigns_to_unknown_birthdays_forms_no_date_block(
    extract: tuple[Path, Path], tmp_path: Path
) -> None:
    """A hostel's residents all written as born on 1 January 1990: tokenising forms no
    date-of-birth block on that assigned day (docs/quality.md), so the linter counts
    none either, and the date-of-birth block is not refused for its size."""
    data, mapping = extract
    header, *rows = (line.split(",") for line in data.read_text("utf-8").splitlines())
    dob = header.index("DOB")
    for row in rows[:120]:
        row[dob] = "1990-01-01"
    heaped = tmp_path / "heaped.csv"
    heaped.write_text("".join(",".join(r) + "\n" for r in [header, *rows]), "utf-8")
    spec = tmp_path / "loose.toml"
    spec.write_text(LOOSE)
    result = sdk(
        "spec", "lint", heaped, "--mapping", mapping, "--spec", spec,
        "--max-block", "100", "--max-shared", "1000",
    )  # fmt: skip
    assert any(
        line.startswith("ok        blocking key by_dob ") for line in result.stdout.splitlines()
    )
    assert "'by_dob'" not in result.stderr
    # the claim can fail: counted as a day like any other, the 120 are one block
    records = list(iter_records(heaped, load_mapping(mapping)))
    loose = resolve_spec(spec)
    verdicts = {
        assigned: {
            v.name: v
            for v in lint_evidence(
                lambda: records, loose, max_block=100, max_shared=1000, assigned_birthdays=assigned
            )
        }
        for assigned in (frozenset(), frozenset({"01-01"}))
    }
    assert verdicts[frozenset()]["by_dob"].verdict == "refused"
    assert verdicts[frozenset()]["by_dob"].largest >= 120
    assert verdicts[frozenset({"01-01"})]["by_dob"].verdict == "ok"
