"""What an organisation gets from ``pip install '.[sdk]'``: the whole ``tokenise`` command.

``run(n)`` clones the repository's HEAD (so nothing built in this checkout is used),
installs it twice into new virtual environments — as pip builds it (compiled with mypyc
when a C compiler is present) and with ``TESSERA_PURE_PYTHON=1`` — and times
``tessera-sdk tokenise`` of an n-row GP extract (1,000,000 in ``make bench``): keystore
opening, reading, normalising, tokenising, and the batch and local index written. For each
install (``compiled``, ``plain``) and each way of running it (default options, that is
every core; and ``--workers 1``, named ``one_core_``) it reports:

- ``{install}_{run}rec_per_s``: records per second by the clock, the issue's figure
  (≥ 50,000 for ``compiled_rec_per_s`` at a million rows on an idle 2-core machine);
- ``{install}_{run}cpu_us_per_record``: CPU time of the whole command, workers included
  (``bench.cputime``), per record: what the run costs, which other work on the machine
  disturbs far less than the clock;
- ``{install}_{run}parent_cpu_us_per_record``: the share of that spent in the command's own
  process (reading the extract, handing blocks out, the batch and local index): the serial
  part, which no number of workers shortens;
- ``{install}_{run}cpu_bound_rec_per_s``: the rate that CPU time allows on an otherwise idle
  machine with this many cores, ``n / max(parent CPU, whole CPU / cores)``: an upper bound
  on the clock, reached when the parent and the workers overlap perfectly.

and ``compiled`` (1 when the pip-built install really runs compiled: ``--version`` says),
``wheel_bytes`` (the wheel pip builds for the SDK's install), ``install_seconds`` (building
that wheel, the compile, and installing it, by the clock), ``cores`` and ``load_average``
(the machine's one-minute load average, the mean of its value after each timed run: the
wall-clock figures mean little when it is well above ``cores``).

    .venv/bin/python -m bench.install [N]     # N = 1,000,000 by default
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.cputime import Measured, measure
from bench.tokenise import _extract
from client_sdk.orgstore import OrgStore
from keys.keystore import Keystore, create_domain
from keys.rotation import custodian_identity, grant_key, new_custodian_contents
from keys.wrapping import OrgPublicKey

__all__ = ["run"]

ROOT = Path(__file__).resolve().parents[1]
DOMAIN = "bench-health"
PASSPHRASE = "bench organisation passphrase"


def _install(venv: Path, target: str, *, pure: bool = False) -> None:
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = {**os.environ, **({"TESSERA_PURE_PYTHON": "1"} if pure else {})}
    pip = [str(venv / "bin" / "pip"), "install", "--quiet", target]
    subprocess.run(pip, check=True, env=env, cwd=venv.parent)


def _org(root: Path) -> Path:
    custodian = Keystore.create(
        root / "custodian.keystore", "bench custodian passphrase", contents=new_custodian_contents()
    )
    create_domain(custodian, DOMAIN)
    store = OrgStore.create(
        root / "org", "bench-gp", PASSPHRASE, custodian=custodian_identity(custodian)
    )
    public = OrgPublicKey.from_file_bytes(store.public_key_path.read_bytes())
    store.install_blob(grant_key(custodian, DOMAIN, public).blob)
    return store.directory


def _tokenise(
    venv: Path, extract: Path, mapping: Path, org: Path, *extra: str
) -> tuple[Measured, float]:
    """One timed run, from a new local index, and the load average after it."""
    out = org.parent / "bench.tsb"
    out.unlink(missing_ok=True)
    for index in org.rglob("bench.arrow*"):
        index.unlink()
    command = [str(venv / "bin" / "tessera-sdk"), "tokenise", str(extract)]
    command += ["--mapping", str(mapping), "--dir", str(org), "--domain", DOMAIN]
    command += ["--dataset", "bench", "--out", str(out), "--no-progress", *extra]
    env = {**os.environ, "TESSERA_SDK_PASSPHRASE": PASSPHRASE}
    measured = measure(command, env=env, cwd=org.parent)
    return measured, os.getloadavg()[0]


def _figures(n: int, name: str, measured: Measured, cores: int) -> dict[str, float]:
    bound = max(measured.cpu_main, measured.cpu_tree / cores)
    return {
        f"{name}rec_per_s": n / measured.wall,
        f"{name}cpu_us_per_record": 1e6 * measured.cpu_tree / n,
        f"{name}parent_cpu_us_per_record": 1e6 * measured.cpu_main / n,
        f"{name}cpu_bound_rec_per_s": n / bound,
    }


def _table(n: int, numbers: dict[str, float]) -> str:
    """The figures as a table for the terminal."""
    lines = [
        f"tessera-sdk tokenise, {n:,} rows, from a fresh install "
        f"({numbers['cores']:.0f} cores, load average {numbers['load_average']:.1f}):",
        f"  {'install, workers':<26}{'records/s':>11}{'CPU µs/rec':>12}{'of which parent':>17}"
        f"{'CPU-bound rec/s':>17}",
    ]
    for kind in ("compiled", "plain"):
        for label, workers in (("", "default"), ("one_core_", "1")):
            name = f"{kind}_{label}"
            lines.append(
                f"  {f'{kind}, {workers}':<26}{numbers[name + 'rec_per_s']:>11,.0f}"
                f"{numbers[name + 'cpu_us_per_record']:>12.1f}"
                f"{numbers[name + 'parent_cpu_us_per_record']:>17.1f}"
                f"{numbers[name + 'cpu_bound_rec_per_s']:>17,.0f}"
            )
    return "\n".join(lines)


def run(n: int) -> dict[str, float]:
    """The whole command's records per second from a fresh compiled and a plain install."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        clone = root / "tessera"
        subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
        wheels = root / "wheels"
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(wheels),
             str(clone)],
            check=True,
        )  # fmt: skip
        (wheel,) = wheels.glob("tessera-*.whl")  # what `pip install .` builds, built once
        wheel_bytes = wheel.stat().st_size
        compiled_venv, plain_venv = root / "compiled", root / "plain"
        _install(compiled_venv, f"{wheel}[sdk]")
        install_seconds = time.perf_counter() - started
        _install(plain_venv, f"{clone}[sdk]", pure=True)
        version = subprocess.run(
            [str(compiled_venv / "bin" / "tessera-sdk"), "--version"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        extract, mapping = _extract(root, n)
        org = _org(root)
        cores = (
            len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity")
            else os.cpu_count() or 1
        )
        numbers: dict[str, float] = {}
        loads: list[float] = []
        for kind, venv in (("compiled", compiled_venv), ("plain", plain_venv)):
            for label, extra in (("", ()), ("one_core_", ("--workers", "1"))):
                measured, load = _tokenise(venv, extract, mapping, org, *extra)
                numbers |= _figures(n, f"{kind}_{label}", measured, cores)
                loads.append(load)
    numbers |= {
        "compiled": 1.0 if "compiled" in version else 0.0,
        "wheel_bytes": float(wheel_bytes),
        "install_seconds": install_seconds,
        "cores": float(cores),
        "load_average": sum(loads) / len(loads),
    }
    print(_table(n, numbers), flush=True)
    return numbers


if __name__ == "__main__":
    print(run(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000))
