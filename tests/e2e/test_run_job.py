"""`tessera-sdk run --config job.toml`: the nightly job, end to end against a real broker."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
from filelock import FileLock

from client_sdk.job import GRADE_ORDER, grade_meets, load_job
from keys.batch import BatchReader
from tests.support.somerset_world import Org, Somerset, shared_somerset

pytestmark = pytest.mark.xdist_group("somerset")

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def world(broker_server, tmp_path_factory) -> Somerset:
    return shared_somerset(broker_server, tmp_path_factory.mktemp("somerset"))


def _practice(world: Somerset) -> Org:
    return next(o for k, o in sorted(world.orgs.items()) if k not in ("hospital", "optout"))


def _job(world: Somerset, tmp: Path, *, extract: Path | None = None, **upload: str) -> Path:
    org = _practice(world)
    data = world.root / "data"
    floor = "".join(f'{k} = "{v}"\n' for k, v in upload.items())
    path = tmp / "job.toml"
    path.write_text(
        f"""[job]
org_dir = "{org.directory}"
work_dir = "runs"

[extract]
input = "{extract or data / f"{org.source}.csv"}"
mapping = "{data / f"mapping_{org.source}.toml"}"

[tokenise]
domain = "{world.domain}"
dataset = "{org.dataset}"

[upload]
mode = "replace"
{floor}"""
    )
    return path


def _run(world: Somerset, job: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "tessera-sdk"), "run", "--config", str(job)],
        env=world.env(_practice(world).credential),
        cwd="/",
        capture_output=True,
        text=True,
        timeout=300,
    )


def _identifiers(path: Path, mapping_columns: tuple[str, ...]) -> set[str]:
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))[:50]
    return {r[c] for r in rows for c in mapping_columns if c in r and len(r[c]) >= 5}


def test_a_nightly_run_tokenises_uploads_and_logs_no_identifier(world, tmp_path):
    job = _job(world, tmp_path)
    first = _run(world, job)
    assert first.returncode == 0, first.stderr
    assert "linked" in first.stdout
    second = _run(world, job)
    assert second.returncode == 0, second.stderr
    runs = tmp_path / "runs"
    batches = sorted(runs.glob("*.tsb"))
    assert len(batches) == 1  # the earlier run's copy went once the newer one was uploaded
    log = (runs / "run.log").read_text()
    assert log.count("run finished") == 2 and "upload: done" in log
    assert f"grade {BatchReader(batches[0]).manifest.quality['grade']}" in log
    org = _practice(world)
    extract = world.root / "data" / f"{org.source}.csv"
    with extract.open(encoding="utf-8", newline="") as handle:
        columns = tuple(next(csv.reader(handle)))
    leaked = {v for v in _identifiers(extract, columns) if v in log + first.stdout + first.stderr}
    assert not leaked


def test_a_second_run_while_one_holds_the_lock_exits_17(world, tmp_path):
    job = _job(world, tmp_path)
    lock_path = load_job(job).lock_path
    lock_path.parent.mkdir(parents=True)
    with FileLock(lock_path, timeout=0):
        busy = _run(world, job)
    assert busy.returncode == 17
    assert "another run of this job" in busy.stderr and busy.stderr.count("\n") == 1
    assert not list(lock_path.parent.glob("*.tsb"))


def test_an_extract_below_the_quality_floor_is_not_uploaded(world, tmp_path):
    org = _practice(world)
    source = world.root / "data" / f"{org.source}.csv"
    with source.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    header = rows[0]
    blanked = [i for i, name in enumerate(header) if "POST" in name.upper()]
    assert blanked, header
    for row in rows[1::2]:  # half the postcodes gone: Silver needs 85%, Gold 95%
        for i in blanked:
            row[i] = ""
    degraded = tmp_path / "degraded.csv"
    with degraded.open("w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows(rows)
    before = world.broker_persons()
    refused = _run(world, _job(world, tmp_path, extract=degraded, min_grade="Silver"))
    assert refused.returncode == 18, refused.stderr
    assert "below the job's floor Silver: not uploaded" in refused.stderr
    assert "upload: refused" in (tmp_path / "runs" / "run.log").read_text()
    assert world.broker_persons() == before


def test_grades_order_best_first():
    assert grade_meets("Gold", "Silver") and grade_meets("Silver", "Silver")
    assert not grade_meets("Bronze", "Silver") and not grade_meets("Not rated", "Bronze")
    assert all(grade_meets(g, "Not rated") for g in GRADE_ORDER)


def test_a_job_file_lists_every_problem_and_exits_16(tmp_path):
    job = tmp_path / "job.toml"
    job.write_text('[job]\norg_dir = "o"\n[extract]\ninput = "a.csv"\n[tokenise]\ndomain = ""\n')
    result = subprocess.run(
        [str(BIN / "tessera-sdk"), "run", "--config", str(job)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 16
    for problem in ("extract.mapping", "tokenise.domain", "tokenise.dataset"):
        assert problem in result.stderr
    assert result.stderr.count("\n") == 1


def test_a_job_names_a_shipped_spec_or_a_spec_file_beside_it(tmp_path):
    """``spec = "uk-health-probabilistic"`` names the shipped spec (nothing to copy from
    the installed package); any other value is a file, relative to the job file."""
    base = '[job]\norg_dir = "o"\n[extract]\ninput = "a.csv"\nmapping = "m.toml"\n'
    tail = '[tokenise]\ndomain = "d"\ndataset = "gp"\n'
    job = tmp_path / "job.toml"
    job.write_text(base + 'spec = "uk-health-probabilistic"\n' + tail)
    assert load_job(job).extract.spec == Path("uk-health-probabilistic")
    job.write_text(base + 'spec = "specs/ours.toml"\n' + tail)
    assert load_job(job).extract.spec == tmp_path / "specs" / "ours.toml"
    (tmp_path / "ours").write_text("")  # a file of that bare name beside the job wins
    job.write_text(base + 'spec = "ours"\n' + tail)
    assert load_job(job).extract.spec == tmp_path / "ours"
