"""`tessera-sdk review` as a subprocess against a real broker: the hospital's doubts about
its own records, as its own local ids (the world: tests/support/review_world.py)."""

from __future__ import annotations

import csv
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from client_sdk.cli import COMMANDS
from client_sdk.cli.review import REVIEW_COLUMNS
from client_sdk.local_index import LocalIndex
from tests.support.release_world import HOSPITAL_PERSONS, World
from tests.support.review_world import CLINIC_REFS, KEY_REF, TWIN_REFS, build_review_world

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def world(broker_server, tmp_path_factory) -> World:
    return build_review_world(broker_server, tmp_path_factory.mktemp("review-e2e"))


@pytest.fixture(scope="module")
def orgdir(world, tmp_path_factory) -> Path:
    """The hospital's directory, its local index holding what it issued."""
    directory = tmp_path_factory.mktemp("hospital")
    with LocalIndex.open(directory, "clinic") as index:
        index.add(list(CLINIC_REFS.values()), [f"CLIN-{i}" for i in CLINIC_REFS], batch_id="b1")
    with LocalIndex.open(directory, "pas") as index:
        persons = list(HOSPITAL_PERSONS)
        index.add(
            [world.hosp_refs[i] for i in persons], [f"PAS-{i}" for i in persons], batch_id="b2"
        )
    return directory


def _review(world: World, credential: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "tessera-sdk"), "review", *args],
        env=world.broker.sdk_env(credential),
        capture_output=True,
        text=True,
        timeout=120,
    )


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def test_the_hospital_downloads_its_doubts_as_its_own_local_ids(world, orgdir, tmp_path):
    out = tmp_path / "review.csv"
    result = _review(world, world.hosp_cred, "--dir", str(orgdir), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "items to review" in result.stderr and "key_conflict" in result.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    rows = _rows(out)
    assert rows and list(rows[0]) == list(REVIEW_COLUMNS)
    by_id = {(r["local_id"], r["doubt"]): r for r in rows}
    key = by_id[("CLIN-100", "key_conflict")]
    assert key["dataset"] == "clinic" and key["domain"] == world.domain
    assert key["other_dataset"] in {f"{world.gp}/reg", f"{world.hosp}/pas"}
    assert (key["agreed"], key["disagreed"], key["not_compared"]) == ("name_dob: token", "nhs", "")
    twin = by_id[("CLIN-102", "twin_conflict")]
    assert "nhs" in twin["not_compared"].split("; ")
    assert ("CLIN-101", "twin_conflict") not in by_id  # it joined person 7 first


def test_the_review_file_holds_only_the_organisations_own_local_ids(world, orgdir, tmp_path):
    out = tmp_path / "review.csv"
    result = _review(world, world.hosp_cred, "--dir", str(orgdir), "--out", str(out))
    assert result.returncode == 0, result.stderr
    own = {f"CLIN-{i}" for i in CLINIC_REFS} | {f"PAS-{i}" for i in HOSPITAL_PERSONS}
    rows = _rows(out)
    assert {r["local_id"] for r in rows} <= own
    text = out.read_text(encoding="utf-8") + result.stdout + result.stderr
    refs = [*world.gp_refs.values(), *world.hosp_refs.values(), KEY_REF, *TWIN_REFS]
    tokens = [t for pair in world.tokens.values() for t in pair if t is not None]
    for secret in (*refs, *tokens):
        assert secret.hex() not in text  # no reference of anyone's, not even its own
    assert "secret-" not in text and "visit-" not in text  # no payload values
    assert world.gp not in {r["dataset"] for r in rows}
    other_org_fields = {r["other_dataset"].split("/")[0] for r in rows}
    assert other_org_fields <= {world.gp, world.hosp}  # the other side: its dataset id only


def test_an_organisation_with_no_doubts_gets_an_empty_file(world, tmp_path):
    out = tmp_path / "review.csv"
    directory = tmp_path / "register"
    directory.mkdir()
    result = _review(world, world.ndop_cred, "--dir", str(directory), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert _rows(out) == [] and out.read_text(encoding="utf-8").startswith("local_id,")
    assert "wrote 0 items" in result.stderr


def test_bad_input_is_one_line_and_a_non_zero_exit(world, orgdir, tmp_path):
    out = tmp_path / "review.csv"
    for credential, args in (
        ("tsk_not-a-credential", ["--dir", str(orgdir), "--out", str(out)]),
        (world.hosp_cred, ["--dir", str(tmp_path / "missing"), "--out", str(out)]),
        (world.hosp_cred, ["--dir", str(orgdir), "--out", str(tmp_path / "no" / "dir.csv")]),
    ):
        result = _review(world, credential, *args)
        assert result.returncode != 0
        assert "Traceback" not in result.stderr
        errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]
        assert len(errors) == 1, result.stderr  # one line (a usage error adds click's hint)
        assert not out.exists()
    assert "tsk_not-a-credential" not in result.stderr


def test_review_is_in_the_command_table():
    assert "review" in {c.name for c in COMMANDS}
