"""CPU time of a command and of every process it starts, for benchmarks on a shared machine.

The wall clock of a command says little when other work shares the cores; its CPU time
says what it costs. ``measure`` runs a command and reports both, and splits the CPU time
in two: the command's own process, and the whole tree (its workers too). A process pool's
workers are not the command's children (``forkserver`` starts them), so their time never
reaches the command's ``getrusage``. This helper runs the command as a child subreaper
(Linux's ``PR_SET_CHILD_SUBREAPER``): every descendant that outlives its parent is handed
to the helper, which waits for it, so its CPU time is counted. Elsewhere the tree's figure
is the command's own.

    python -m bench.cputime COMMAND [ARGS...]   # prints one JSON object
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Measured", "measure"]

_PR_SET_CHILD_SUBREAPER = 36


@dataclass(frozen=True, slots=True)
class Measured:
    """One run: wall-clock seconds, and CPU seconds of the command alone and of its tree."""

    wall: float
    cpu_main: float
    cpu_tree: float


def measure(command: list[str], *, env: dict[str, str], cwd: Path) -> Measured:
    """Run ``command`` (it must succeed; its output is discarded) and time it.

    Raises:
        subprocess.CalledProcessError: the command failed (its output is in the error).
    """
    helper = [sys.executable, "-m", "bench.cputime", *command]
    root = str(Path(__file__).resolve().parents[1])
    done = subprocess.run(
        helper,
        check=True,
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**env, "PYTHONPATH": root},
    )
    return Measured(**json.loads(done.stdout.splitlines()[-1]))


def _cpu(usage: resource.struct_rusage) -> float:
    return usage.ru_utime + usage.ru_stime


def _main(command: list[str]) -> int:
    if sys.platform == "linux":
        ctypes.CDLL(None).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, check=False)
    wall = time.perf_counter() - started
    if done.returncode:
        sys.stderr.buffer.write(done.stdout + done.stderr)
        return done.returncode
    main = _cpu(resource.getrusage(resource.RUSAGE_CHILDREN))
    while True:  # the orphaned descendants: a pool's forkserver and, through it, its workers
        try:
            os.wait()
        except ChildProcessError:
            break
    tree = _cpu(resource.getrusage(resource.RUSAGE_CHILDREN))
    print(json.dumps({"wall": wall, "cpu_main": main, "cpu_tree": tree}))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
