"""The broker's keystore passphrase has a documented minimum length (MIN_PASSPHRASE_LENGTH)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pydantic
import pytest

from broker.config import MIN_PASSPHRASE_LENGTH, BrokerSettings


def test_a_passphrase_one_short_of_the_minimum_is_refused(tmp_path):
    short = "k7#Qz" + "x" * (MIN_PASSPHRASE_LENGTH - 6)
    with pytest.raises(pydantic.ValidationError, match="shorter than"):
        BrokerSettings(keystore_passphrase=short, data_dir=tmp_path)
    enough = short + "y"
    settings = BrokerSettings(keystore_passphrase=enough, data_dir=tmp_path)
    assert settings.keystore_passphrase is not None


def test_development_mode_allows_a_short_passphrase(tmp_path):
    settings = BrokerSettings(keystore_passphrase="dev", development=True, data_dir=tmp_path)
    assert settings.development


def test_serve_refuses_a_short_passphrase_in_one_line(tmp_path):
    short = "Tq9-short-pass"
    assert len(short) < MIN_PASSPHRASE_LENGTH
    done = subprocess.run(
        [str(Path(sys.executable).parent / "tessera-broker"), "serve"],
        env={
            "PATH": "/usr/bin:/bin",
            "TESSERA_BROKER_KEYSTORE_PASSPHRASE": short,
            "TESSERA_BROKER_DATA_DIR": str(tmp_path / "broker"),
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 22
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and f"shorter than {MIN_PASSPHRASE_LENGTH} characters" in lines[0]
    assert short not in done.stderr
    assert not (tmp_path / "broker" / "broker.tks").exists()
