"""The README's walkthrough, run as a newcomer would: every ```sh block, in order, as written.

The only change is the port, moved off 8470 if that one is taken. The run must reach a
patients-at-risk list and a researcher cohort, and its output must carry no secret.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.xdist_group("readme")

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"


def walkthrough_blocks() -> list[str]:
    """The ```sh blocks of the README's Walkthrough section, in order."""
    text = README.read_text()
    section = text[text.index("## Walkthrough") : text.index("## Key ceremony")]
    return re.findall(r"```sh\n(.*?)```", section, flags=re.S)


def _port() -> int:
    with socket.socket() as sock:
        if sock.connect_ex(("127.0.0.1", 8470)) != 0:
            return 8470
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_walkthrough_covers_every_role() -> None:
    script = "\n".join(walkthrough_blocks())
    for command in (
        "tessera-sdk synth",
        "tessera-broker serve",
        "tessera-broker admin org add",
        "tessera-keys grant",
        "tessera-sdk check",
        "tessera-sdk tokenise",
        "tessera-sdk upload",
        "tessera-broker report",
        "tessera-broker admin agreement create",
        "tessera-sdk agreement approve",
        "tessera-sdk linked",
        "tessera-sdk risk",
        "tessera-sdk cohort",
        "tessera-broker audit verify",
    ):
        assert command in script, command
    assert "PASSPHRASE=" not in script.replace('PASSPHRASE="$(new_secret)"', "")


def test_walkthrough_runs_as_written() -> None:
    workdir = ROOT / "walkthrough"
    shutil.rmtree(workdir, ignore_errors=True)
    port = _port()
    script = "\n".join(walkthrough_blocks()).replace("8470", str(port))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TESSERA_")}
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    try:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        with (workdir / "gp-a.at-risk.csv").open(newline="") as fh:
            at_risk = list(csv.DictReader(fh))
        assert at_risk, "the practice's patients-at-risk list is empty"
        with (workdir / "cohort.csv").open(newline="") as fh:
            cohort = list(csv.DictReader(fh))
        assert len(cohort) > 50
        assert all(not any(c.lower().endswith("ref") for c in row) for row in cohort[:1])
        output = result.stdout + result.stderr
        for name in ("gp-a", "hospital", "dr-avery"):
            credential = (workdir / f"{name}.credential").read_text().strip()
            assert credential and credential not in output
            assert (
                credential
                not in (workdir / "var" / "tessera")
                .joinpath("broker.log")
                .read_text(errors="replace")
                if (workdir / "var/tessera/broker.log").exists()
                else True
            )
            assert credential not in (workdir / "broker.log").read_text(errors="replace")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
