"""BrokerSettings: placeholder secrets refused outside development; CLI says so in one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pydantic
import pytest

from broker.config import BrokerSettings


@pytest.mark.parametrize("passphrase", [None, "", "changeme", "password", "  Secret "])
def test_missing_or_placeholder_passphrase_is_refused(passphrase, monkeypatch):
    monkeypatch.delenv("TESSERA_BROKER_KEYSTORE_PASSPHRASE", raising=False)
    monkeypatch.delenv("TESSERA_BROKER_DEVELOPMENT", raising=False)
    with pytest.raises(pydantic.ValidationError):
        BrokerSettings(keystore_passphrase=passphrase)


def test_development_mode_allows_a_placeholder(tmp_path):
    settings = BrokerSettings(keystore_passphrase="changeme", development=True, data_dir=tmp_path)
    assert settings.resolved_keystore_path == tmp_path / "broker.tks"
    assert settings.redis_url is None


def test_secret_never_shows_in_repr():
    settings = BrokerSettings(keystore_passphrase="a-real-passphrase-here")
    assert "a-real-passphrase-here" not in repr(settings)


def test_serve_refuses_a_placeholder_in_one_line(tmp_path):
    env = {
        "PATH": "/usr/bin:/bin",
        "TESSERA_BROKER_KEYSTORE_PASSPHRASE": "changeme",
        "TESSERA_BROKER_DATA_DIR": str(tmp_path),
    }
    done = subprocess.run(
        [str(Path(sys.executable).parent / "tessera-broker"), "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 22
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "placeholder" in lines[0]
    assert "changeme" not in done.stderr
