"""bench.cputime counts the CPU time of a command's orphaned descendants, as a pool's are."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.cputime import measure

# A parent that starts a worker of its own and exits at once, leaving it orphaned: the
# worker burns a fixed amount of work (not of time), so its CPU is there however loaded.
_ORPHANING = """
import subprocess, sys
subprocess.Popen([sys.executable, "-c", "sum(i * i for i in range(3_000_000))"])
"""


@pytest.mark.skipif(sys.platform != "linux", reason="the subreaper is Linux's")
def test_an_orphaned_descendants_cpu_counts_in_the_tree_only(tmp_path: Path) -> None:
    measured = measure([sys.executable, "-c", _ORPHANING], env=dict(os.environ), cwd=tmp_path)
    alone = measure([sys.executable, "-c", "pass"], env=dict(os.environ), cwd=tmp_path)
    # the orphan (a Python start-up and its work) is in the tree, not in the command's own
    assert measured.cpu_tree - measured.cpu_main > alone.cpu_main


def test_a_failing_command_fails_the_measurement(tmp_path: Path) -> None:
    with pytest.raises(subprocess.CalledProcessError):
        measure([sys.executable, "-c", "raise SystemExit(3)"], env=dict(os.environ), cwd=tmp_path)
