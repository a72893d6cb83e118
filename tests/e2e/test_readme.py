"""The README's walkthrough, run as a newcomer would: every ```sh block, in order, as written.

The only change is the port, moved off 8470 if that one is taken. The run must reach a
patients-at-risk list and a researcher cohort, and its output must carry no secret.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
from pathlib import Path

import click
import pytest

from broker.cli import cli as broker_cli
from client_sdk.cli import cli as sdk_cli
from keys.cli import cli as keys_cli

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
        "tessera-broker evaluate",
    ):
        assert command in script, command
    assert "PASSPHRASE=" not in script.replace('PASSPHRASE="$(new_secret)"', "")


def _run_walkthrough(script: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_walkthrough_runs_as_written_and_a_rerun_finishes_or_stops_saying_why() -> None:
    workdir = ROOT / "walkthrough"
    shutil.rmtree(workdir, ignore_errors=True)
    port = _port()
    script = "\n".join(walkthrough_blocks()).replace("8470", str(port))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TESSERA_")}
    result = _run_walkthrough(script, env)
    try:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        with (workdir / "gp-a.at-risk.csv").open(newline="") as fh:
            at_risk = list(csv.DictReader(fh))
        assert at_risk, "the practice's patients-at-risk list is empty"
        with (workdir / "cohort.csv").open(newline="") as fh:
            cohort = list(csv.DictReader(fh))
        assert len(cohort) > 50
        assert all(not any(c.lower().endswith("ref") for c in row) for row in cohort[:1])
        evaluation = json.loads((workdir / "evaluation.json").read_text())
        assert evaluation["true_pairs"] > 0 and 0 < evaluation["precision"] <= 1
        assert re.search(r"^precision\s+\S+$", result.stdout, flags=re.M)
        register = json.loads((workdir / "register.json").read_text())
        research = [a for a in _agreements(register) if "Frailty" in json.dumps(a)]
        assert research and all("care review" not in json.dumps(a) for a in research)
        assert not (ROOT / "report.json").exists()
        output = result.stdout + result.stderr
        for name in ("gp-a", "hospital", "dr-avery"):
            credential = (workdir / f"{name}.credential").read_text().strip()
            assert credential and credential not in output
            assert credential not in (workdir / "broker.log").read_text(errors="replace")

        # The same walkthrough again in the same directory (new passphrases, old data):
        # it must finish, or stop with a one-line reason, never wait for ever.
        rerun = _run_walkthrough(script, env)
        if rerun.returncode != 0:
            assert "Traceback" not in rerun.stderr, rerun.stderr[-3000:]
            last = rerun.stderr.strip().splitlines()[-1]
            assert "error:" in last or "broker stopped:" in last, rerun.stderr[-3000:]
            if "broker stopped:" in last:
                assert "does not open with TESSERA_BROKER_KEYSTORE_PASSPHRASE" in last
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _agreements(register: object) -> list[object]:
    """The agreement entries of /register.json, whatever its top-level shape."""
    if isinstance(register, list):
        return register
    assert isinstance(register, dict)
    entries = register.get("agreements", [])
    assert isinstance(entries, list)
    return entries


def _command_lines() -> list[tuple[str, list[str]]]:
    """Every tessera-* command of every ```sh block in the README, as (line, argv)."""
    text = README.read_text()
    commands: list[tuple[str, list[str]]] = []
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.S):
        joined = re.sub(r"<<(\w+)\n.*?\n\1\n", "\n", block.replace("\\\n", " "), flags=re.S)
        for raw in joined.splitlines():
            line = raw.split(" #")[0].strip()
            for part in re.split(r"\s*(?:&&|\||;)\s*", line):
                if "tessera-" not in part:
                    continue
                words = shlex.split(part, comments=True)
                while words and "=" in words[0] and not words[0].startswith("-"):
                    words = words[1:]  # VAR=value prefixes
                if words and words[0].startswith("$("):
                    continue
                for i, word in enumerate(words):
                    if word.startswith(("tessera-keys", "tessera-sdk", "tessera-broker")):
                        commands.append((raw.strip(), words[i:]))
                        break
    return commands


def _resolve(argv: list[str]) -> tuple[click.Command, list[str]]:
    roots: dict[str, click.Command] = {
        "tessera-keys": keys_cli,
        "tessera-sdk": sdk_cli,
        "tessera-broker": broker_cli,
    }
    command = roots[argv[0].split(")")[0]]
    rest = argv[1:]
    while isinstance(command, click.Group) and rest and not rest[0].startswith("-"):
        sub = command.get_command(click.Context(command), rest[0])
        assert sub is not None, f"no command {rest[0]!r} in {argv}"
        command, rest = sub, rest[1:]
    return command, rest


def test_every_readme_command_exists_with_the_options_it_uses() -> None:
    """The reference sections' commands (the walkthrough above runs the main flow)."""
    lines = _command_lines()
    assert len(lines) > 40
    for line, argv in lines:
        command, rest = _resolve(argv)
        known = {opt for param in command.params for opt in param.opts + param.secondary_opts}
        known |= {"--help", "--debug"}
        for word in rest:
            if word.startswith("--"):
                assert word.split("=")[0] in known, f"{line}: {word} is not an option"
