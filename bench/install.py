"""What an organisation gets from ``pip install '.[sdk]'``: the whole ``tokenise`` command.

``run(n)`` clones the repository's HEAD (so nothing built in this checkout is used),
installs it twice into new virtual environments — as pip builds it (compiled with mypyc
when a C compiler is present) and with ``TESSERA_PURE_PYTHON=1`` — and times
``tessera-sdk tokenise`` of an n-row GP extract by the clock: keystore opening, reading,
normalising, tokenising, and the batch and local index written. It reports:

- ``compiled_rec_per_s`` / ``compiled_one_core_rec_per_s``: the compiled install with
  default options (every core) and with ``--workers 1``;
- ``plain_rec_per_s`` / ``plain_one_core_rec_per_s``: the same, plain Python;
- ``compiled``: 1 when the pip-built install really runs compiled (``--version`` says);
- ``wheel_bytes``: the size of the wheel pip builds for the SDK's install;
- ``install_seconds``: building that wheel (the compile) and installing it, by the clock.

    .venv/bin/python -m bench.install [N]
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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


def _tokenise(venv: Path, extract: Path, mapping: Path, org: Path, *extra: str) -> float:
    out = org.parent / "bench.tsb"
    out.unlink(missing_ok=True)
    for index in org.rglob("bench.arrow*"):
        index.unlink()
    command = [str(venv / "bin" / "tessera-sdk"), "tokenise", str(extract)]
    command += ["--mapping", str(mapping), "--dir", str(org), "--domain", DOMAIN]
    command += ["--dataset", "bench", "--out", str(out), "--no-progress", *extra]
    env = {**os.environ, "TESSERA_SDK_PASSPHRASE": PASSPHRASE}
    started = time.perf_counter()
    subprocess.run(command, check=True, env=env, capture_output=True, cwd=org.parent)
    return time.perf_counter() - started


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
        numbers = {
            f"{kind}_{label}rec_per_s": n / _tokenise(venv, extract, mapping, org, *extra)
            for kind, venv in (("compiled", compiled_venv), ("plain", plain_venv))
            for label, extra in (("", ()), ("one_core_", ("--workers", "1")))
        }
    return {
        **numbers,
        "compiled": 1.0 if "compiled" in version else 0.0,
        "wheel_bytes": float(wheel_bytes),
        "install_seconds": install_seconds,
    }


if __name__ == "__main__":
    print(run(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000))
