"""Secret settings from files (``TESSERA_BROKER_SECRETS_DIR``), as Docker and Kubernetes
secrets and systemd credentials hand them over: read after the environment, stripped of
their trailing newline, and a missing directory is a one-line error.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from broker.config import BrokerSettings

BIN = Path(sys.executable).parent


@pytest.fixture
def clean_env(monkeypatch):
    for name in list(os.environ):
        if name.startswith("TESSERA_BROKER_"):
            monkeypatch.delenv(name)
    return monkeypatch


def test_secret_settings_are_read_from_files(clean_env, tmp_path):
    (tmp_path / "tessera_broker_keystore_passphrase").write_text("a-real-passphrase-from-a-file\n")
    (tmp_path / "tessera_broker_redis_url").write_text("redis://:pw@redis:6379/0\n")
    clean_env.setenv("TESSERA_BROKER_SECRETS_DIR", str(tmp_path))
    settings = BrokerSettings()
    assert settings.keystore_passphrase is not None
    assert settings.keystore_passphrase.get_secret_value() == "a-real-passphrase-from-a-file"
    assert settings.redis_url == "redis://:pw@redis:6379/0"


def test_the_environment_wins_over_a_file(clean_env, tmp_path):
    (tmp_path / "tessera_broker_keystore_passphrase").write_text("from-the-file-passphrase")
    clean_env.setenv("TESSERA_BROKER_SECRETS_DIR", str(tmp_path))
    clean_env.setenv("TESSERA_BROKER_KEYSTORE_PASSPHRASE", "from-the-environment-passphrase")
    settings = BrokerSettings()
    assert settings.keystore_passphrase is not None
    assert settings.keystore_passphrase.get_secret_value() == "from-the-environment-passphrase"


def test_without_the_directory_setting_no_file_is_read(clean_env, tmp_path):
    (tmp_path / "tessera_broker_keystore_passphrase").write_text("never-read-passphrase")
    clean_env.chdir(tmp_path)
    with pytest.raises(ValueError, match="missing or a placeholder"):
        BrokerSettings()


def test_serve_refuses_a_missing_secrets_directory_in_one_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TESSERA_")}
    env["TESSERA_BROKER_SECRETS_DIR"] = str(tmp_path / "absent")
    env["TESSERA_BROKER_DATA_DIR"] = str(tmp_path / "data")
    result = subprocess.run(
        [str(BIN / "tessera-broker"), "serve", "--port", "1"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert result.stderr.count("\n") == 1, result.stderr
    assert "TESSERA_BROKER_SECRETS_DIR" in result.stderr and "Traceback" not in result.stderr
