"""Nothing in keys/ or client_sdk/ needs a POSIX-only module (issue 15: Windows servers).

A fresh interpreter is started with an import hook that refuses every module Windows lacks
(``fcntl``, ``pwd``, ``grp``, ``termios``, …); in it, every module of both packages is
imported, and the key ceremony and a tokenise run through the real CLIs (in-process, so the
hook covers them). Without ``fcntl``, filelock falls back to its portable lock; on Windows
it uses ``msvcrt``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
POSIX_ONLY = sorted(
    {"crypt", "fcntl", "grp", "nis", "posix_ipc", "pty", "pwd", "resource", "spwd", "syslog"}
    | {"termios", "tty"}
)

SCRIPT = r"""
import contextlib, importlib, importlib.abc, io, json, pkgutil, sys, warnings
from pathlib import Path

BLOCKED = set(json.loads(sys.argv[1]))
work, data = Path(sys.argv[2]), Path(sys.argv[3])


class PosixOnly(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (POSIX only)", name=name)
        return None


sys.meta_path.insert(0, PosixOnly())
for name in [m for m in sys.modules if m.partition(".")[0] in BLOCKED]:
    del sys.modules[name]
warnings.simplefilter("ignore")  # filelock says it falls back to its portable lock

import client_sdk, keys

failed = []
for package in (keys, client_sdk):
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        try:
            importlib.import_module(info.name)
        except Exception as exc:
            failed.append(f"{info.name}: {exc!r}")
assert not failed, failed

from client_sdk.cli import cli as sdk_cli
from keys.cli import cli as keys_cli
from keys.cliutil import run_cli

def run(group, prog, *args):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = run_cli(group, prog, [str(a) for a in args])
    print(out.getvalue(), end="")
    assert code == 0, (prog, args, code)
    return out.getvalue()

ks = ("--keystore", work / "custodian.keystore")
run(keys_cli, "tessera-keys", "init", *ks)
run(keys_cli, "tessera-keys", "domain", "create", "somerset-health", *ks)
custodian = run(keys_cli, "tessera-keys", "identity", *ks).strip()
org = work / "north"
run(sdk_cli, "tessera-sdk", "init", "--org", "north-trust", "--dir", org, "--custodian", custodian)
run(keys_cli, "tessera-keys", "grant", "somerset-health", "--org", "north-trust",
    "--public-key", org / "public-key.json", "--out", work / "north-v1.tkey", *ks)
run(sdk_cli, "tessera-sdk", "install-key", work / "north-v1.tkey", "--dir", org)
run(sdk_cli, "tessera-sdk", "keys", "--dir", org)
run(sdk_cli, "tessera-sdk", "tokenise", data / "messy.csv", "--mapping", data / "messy.toml",
    "--dir", org, "--domain", "somerset-health", "--dataset", "extract",
    "--out", work / "north.batch", "--no-progress")
assert (work / "north.batch").stat().st_size > 0
loaded = sorted(m for m in sys.modules if m.partition(".")[0] in BLOCKED)
assert not loaded, loaded
print("POSIX-FREE OK")
"""


def test_keys_and_sdk_import_and_run_without_posix_only_modules(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TESSERA_")}
    env["TESSERA_KEYS_PASSPHRASE"] = "test-only custodian passphrase"
    env["TESSERA_SDK_PASSPHRASE"] = "test-only organisation passphrase"
    env["PYTHONPATH"] = str(ROOT)
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(POSIX_ONLY), str(tmp_path), str(DATA)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "POSIX-FREE OK" in result.stdout
    assert "installed domain somerset-health v1" in result.stdout
    assert "wrote " in result.stdout and "records" in result.stdout


def test_the_hook_really_refuses_a_posix_only_module():
    """The check above could pass vacuously if the hook let ``fcntl`` through."""
    probe = SCRIPT.split("import client_sdk, keys")[0] + "import fcntl\n"
    result = subprocess.run(
        [sys.executable, "-c", probe, json.dumps(POSIX_ONLY), ".", "."],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0 and "POSIX only" in result.stderr
