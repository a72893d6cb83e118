"""``tessera-sdk tokenise`` works in every CPU the process may use unless told otherwise.

The installed CLI runs as a subprocess whose CPU set is narrowed (as ``taskset`` or a
container would), and its summary line names the workers it used.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.client_sdk.sdk_cli import CSV, MAPPING, SDK, tokenise_args
from tests.support.tokenise_world import PASSPHRASE, Org, make_orgs

pytestmark = pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="CPU sets are Linux's")


@pytest.fixture(scope="module")
def org(tmp_path_factory: pytest.TempPathFactory) -> Org:
    return make_orgs(tmp_path_factory.mktemp("orgs"), ["gp"])["gp"]


def _tokenise_on(cpus: set[int], org: Org, tmp_path: Path, *extra: str) -> str:
    data = tmp_path / "x.csv"
    data.write_text(CSV)
    mapping = tmp_path / "mapping.toml"
    mapping.write_text(MAPPING)
    args = tokenise_args(org, data, mapping, tmp_path / "x.batch", dataset="workers")
    result = subprocess.run(
        [SDK, *args, "--force", *extra],
        capture_output=True,
        text=True,
        env={**os.environ, "TESSERA_SDK_PASSPHRASE": PASSPHRASE},
        preexec_fn=lambda: os.sched_setaffinity(0, cpus),
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    (wrote,) = [line for line in result.stdout.splitlines() if line.startswith("wrote ")]
    return wrote


def test_one_cpu_in_the_set_means_one_worker(org: Org, tmp_path: Path) -> None:
    first = min(os.sched_getaffinity(0))
    assert _tokenise_on({first}, org, tmp_path).endswith(", 1 worker")


def test_the_default_is_every_cpu_in_the_set(org: Org, tmp_path: Path) -> None:
    cpus = os.sched_getaffinity(0)
    if len(cpus) < 2:
        pytest.skip("needs two CPUs")
    two = set(sorted(cpus)[:2])
    assert _tokenise_on(two, org, tmp_path).endswith(", 2 workers")


def test_an_explicit_workers_wins_over_the_cpu_set(org: Org, tmp_path: Path) -> None:
    first = min(os.sched_getaffinity(0))
    wrote = _tokenise_on({first}, org, tmp_path, "--workers", "2")
    assert wrote.endswith(", 2 workers")
