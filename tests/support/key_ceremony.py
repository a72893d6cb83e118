"""Runs the README's "Key ceremony" exactly as written (shared by e2e and privacy tests)."""

from __future__ import annotations

import atexit
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "CUSTODIAN_PASSPHRASE",
    "ORG_PASSPHRASE",
    "Ceremony",
    "ceremony_env",
    "readme_ceremony_block",
    "readme_inline_commands",
    "run_readme_ceremony",
    "shared_ceremony",
]

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
CUSTODIAN_PASSPHRASE = "test-only custodian passphrase"
ORG_PASSPHRASE = "test-only organisation passphrase"


def readme_section(heading: str = "## Key ceremony") -> str:
    """The text of one ``## `` section of README.md."""
    text = (ROOT / "README.md").read_text()
    start = text.index(heading + "\n")
    end = text.find("\n## ", start + len(heading))
    return text[start : end if end != -1 else len(text)]


def readme_ceremony_block() -> str:
    """The ```sh block of the Key ceremony section."""
    match = re.search(r"```sh\n(.*?)```", readme_section(), re.S)
    assert match is not None, "README Key ceremony has no ```sh block"
    return match.group(1)


def readme_inline_commands() -> list[str]:
    """Inline `tessera-…` commands in the section's prose (outside the block)."""
    prose = re.sub(r"```sh\n.*?```", "", readme_section(), flags=re.S)
    spans = re.findall(r"`([^`]+)`", re.sub(r"\s*\n\s*", " ", prose))
    return [s for s in spans if re.match(r"tessera-(keys|sdk) \S+ ", s)]


def ceremony_env(**extra: str) -> dict[str, str]:
    """Environment of a ceremony: the venv's scripts first, test-only passphrases."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("TESSERA_KEYS_", "TESSERA_SDK_"))
    }
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["TESSERA_KEYS_PASSPHRASE"] = CUSTODIAN_PASSPHRASE
    env["TESSERA_SDK_PASSPHRASE"] = ORG_PASSPHRASE
    env.update(extra)
    return env


@dataclass
class Ceremony:
    """A finished ceremony: its directory and every command's output."""

    directory: Path
    outputs: list[str] = field(default_factory=list)

    def run(
        self, command: str, *, check: bool = True, **env: str
    ) -> subprocess.CompletedProcess[str]:
        """Run one shell command in the ceremony directory, keeping its output."""
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", command],
            cwd=self.directory,
            env=ceremony_env(**env),
            capture_output=True,
            text=True,
            timeout=300,
        )
        self.outputs += [result.stdout, result.stderr]
        if check:
            assert result.returncode == 0, f"{command!r} failed:\n{result.stdout}\n{result.stderr}"
        return result


def run_readme_ceremony(directory: Path) -> Ceremony:
    """Run the README block, then its inline commands, each exactly as written."""
    ceremony = Ceremony(directory)
    ceremony.run(readme_ceremony_block())
    for command in readme_inline_commands():
        ceremony.run(command)
    return ceremony


_SHARED: list[Ceremony] = []


def shared_ceremony() -> Ceremony:
    """The README ceremony, run once per test process (mark users with one xdist_group)."""
    if not _SHARED:
        directory = Path(tempfile.mkdtemp(prefix="tessera-ceremony-"))
        atexit.register(shutil.rmtree, directory, True)
        _SHARED.append(run_readme_ceremony(directory))
    return _SHARED[0]
