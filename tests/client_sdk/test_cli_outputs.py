"""Outputs of ``tokenise``, ``check --json`` and ``synth`` (issue 19): never over an input,
never over an earlier output without ``--force``, private modes, one-line write errors.

Each test drives the installed ``tessera-sdk`` as a subprocess.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from keys.batch import BatchReader
from tests.client_sdk.sdk_cli import CSV, MAPPING, sdk, tokenise_args
from tests.support.tokenise_world import Org, make_orgs


@pytest.fixture(scope="module")
def org(tmp_path_factory: pytest.TempPathFactory) -> Org:
    return make_orgs(tmp_path_factory.mktemp("orgs"), ["gp"])["gp"]


@pytest.fixture
def extract(tmp_path: Path) -> tuple[Path, Path]:
    data = tmp_path / "x.csv"
    data.write_text(CSV)
    mapping = tmp_path / "mapping.toml"
    mapping.write_text(MAPPING)
    return data, mapping


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.mark.parametrize("target", ["extract", "mapping", "link"])
def test_tokenise_refuses_to_write_its_batch_over_an_input(
    org: Org, extract: tuple[Path, Path], tmp_path: Path, target: str
) -> None:
    data, mapping = extract
    out = {"extract": data, "mapping": mapping, "link": tmp_path / "other-name.batch"}[target]
    if target == "link":
        os.link(data, out)  # another name of the same file: the same inode
    before = data.read_bytes(), mapping.read_bytes()
    result = sdk(*tokenise_args(org, data, mapping, out, dataset="outs"), "--force")
    assert result.returncode == 15
    assert "an input of this command" in _one_line(result)
    assert (data.read_bytes(), mapping.read_bytes()) == before


def test_tokenise_refuses_to_write_over_the_keystore(org: Org, extract: tuple[Path, Path]) -> None:
    data, mapping = extract
    keystore = next(p for p in org.directory.iterdir() if p.is_file())
    before = keystore.read_bytes()
    result = sdk(*tokenise_args(org, data, mapping, keystore, dataset="outs"), "--force")
    assert result.returncode == 15
    assert "a file of the organisation directory" in _one_line(result)
    assert keystore.read_bytes() == before


def test_an_existing_batch_is_replaced_only_with_force_and_batches_are_private(
    org: Org, extract: tuple[Path, Path], tmp_path: Path
) -> None:
    data, mapping = extract
    out = tmp_path / "gp.batch"
    first = sdk(*tokenise_args(org, data, mapping, out, dataset="outs"))
    assert first.returncode == 0, first.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    batch_id = BatchReader(out).manifest.batch_id
    again = sdk(*tokenise_args(org, data, mapping, out, dataset="outs"))
    assert again.returncode == 15
    assert "already exists; pass --force" in _one_line(again)
    assert BatchReader(out).manifest.batch_id == batch_id
    forced = sdk(*tokenise_args(org, data, mapping, out, dataset="outs"), "--force")
    assert forced.returncode == 0, forced.stderr
    assert BatchReader(out).manifest.batch_id != batch_id
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


@pytest.mark.parametrize("target", ["extract", "mapping"])
def test_check_refuses_a_json_report_over_an_input(extract: tuple[Path, Path], target: str) -> None:
    data, mapping = extract
    out = data if target == "extract" else mapping
    before = data.read_bytes(), mapping.read_bytes()
    result = sdk("check", data, "--mapping", mapping, "--json", out, "--force")
    assert result.returncode == 15
    assert "an input of this command" in _one_line(result)
    assert (data.read_bytes(), mapping.read_bytes()) == before


def test_check_report_is_private_and_replaced_only_with_force(
    extract: tuple[Path, Path], tmp_path: Path
) -> None:
    data, mapping = extract
    report = tmp_path / "report.json"
    report.write_text("earlier\n")
    report.chmod(0o644)
    refused = sdk("check", data, "--mapping", mapping, "--json", report)
    assert refused.returncode == 15
    assert "already exists; pass --force" in _one_line(refused)
    assert report.read_text() == "earlier\n"
    forced = sdk("check", data, "--mapping", mapping, "--json", report, "--force")
    assert forced.returncode == 0, forced.stderr
    assert report.read_text().startswith("{")
    assert stat.S_IMODE(report.stat().st_mode) == 0o600
    fresh = tmp_path / "fresh.json"
    assert sdk("check", data, "--mapping", mapping, "--json", fresh).returncode == 0
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o600


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory nobody can create files in, root included (immutable, by chattr)."""
    directory = tmp_path / "read-only"
    directory.mkdir()
    chattr = shutil.which("chattr")
    if chattr is None or subprocess.run([chattr, "+i", directory], check=False).returncode:
        pytest.skip("chattr +i is not available on this file system")
    try:
        yield directory
    finally:
        subprocess.run([chattr, "-i", directory], check=True)


def test_a_read_only_directory_is_one_line_for_every_writer(
    org: Org, extract: tuple[Path, Path], read_only_dir: Path
) -> None:
    data, mapping = extract
    batch = read_only_dir / "gp.batch"
    tokenised = sdk(*tokenise_args(org, data, mapping, batch, dataset="outs"))
    assert tokenised.returncode == 15
    assert _one_line(tokenised).endswith("cannot write: Operation not permitted")
    checked = sdk("check", data, "--mapping", mapping, "--json", read_only_dir / "r.json")
    assert checked.returncode == 15
    assert _one_line(checked).endswith("cannot write: Operation not permitted")
    synth = sdk("synth", "--persons", "5", "--seed", "1", "--out", read_only_dir / "synth")
    assert synth.returncode == 15
    assert _one_line(synth).endswith("cannot write: Operation not permitted")


def test_a_full_disk_is_one_line(extract: tuple[Path, Path]) -> None:
    data, mapping = extract
    result = sdk("check", data, "--mapping", mapping, "--json", "/dev/full", "--force")
    assert result.returncode == 15
    assert _one_line(result).endswith("cannot write: No space left on device")
