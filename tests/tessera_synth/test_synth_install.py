"""The synthetic generator is its own distribution: the SDK neither carries nor needs it.

``tessera-sdk synth`` hands its arguments to the generator's command when ``tessera-synth``
is installed, and says in one line how to install it when it is not (exit 19). The
"not installed" case runs in a fresh interpreter whose import system refuses
``tessera_synth``, as an environment without it would.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.client_sdk.sdk_cli import sdk

ROOT = Path(__file__).resolve().parents[2]

WITHOUT_SYNTH = r"""
import importlib.abc, sys


class NoSynth(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == "tessera_synth":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, NoSynth())
sys.argv = ["tessera-sdk", *sys.argv[1:]]
from client_sdk.cli import main

main()
"""


def _without_synth(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_SYNTH, *args],
        capture_output=True, text=True, cwd=ROOT, timeout=120, check=False,
    )  # fmt: skip


def test_without_the_generator_synth_says_how_to_install_it(tmp_path: Path) -> None:
    result = _without_synth("synth", "--persons", "5", "--seed", "1", "--out", str(tmp_path / "s"))
    assert result.returncode == 19, result.stderr
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "pip install ./synth" in line
    assert not (tmp_path / "s").exists()


def test_without_the_generator_every_other_command_still_works() -> None:
    result = _without_synth("spec", "hash")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()


def test_with_the_generator_synth_writes_the_population(tmp_path: Path) -> None:
    result = sdk("synth", "--persons", "20", "--seed", "3", "--practices", "1", "--out",
                 tmp_path / "s")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("20 persons written to ")
    assert (tmp_path / "s" / "truth.csv").is_file()


def test_synth_help_is_the_generators() -> None:
    result = sdk("synth", "--help")
    assert result.returncode == 0
    assert "--persons" in result.stdout


def test_the_sdk_package_holds_no_generator_or_name_list() -> None:
    shipped = [p.relative_to(ROOT).as_posix() for p in (ROOT / "client_sdk").rglob("*synth*")]
    assert shipped == ["client_sdk/cli/synth.py"]  # the one-line pointer to tessera-synth
