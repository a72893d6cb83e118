"""``serve`` and ``link-worker`` that cannot start: one line on stderr, a non-zero exit, no
traceback (not even one inside a JSON log line), and never a password from the Redis URL."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from broker.store import keyspace
from broker.store.client import Store
from broker.store.schema import SCHEMA_VERSION
from tests.support.harness import free_port

BIN = Path(sys.executable).parent


def _run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "tessera-broker"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TESSERA_")}
    env["TESSERA_BROKER_KEYSTORE_PASSPHRASE"] = "test-" + secrets.token_hex(12)
    env["TESSERA_BROKER_DATA_DIR"] = str(tmp_path / "broker")
    env["TESSERA_BROKER_PORT"] = str(free_port())
    env.update(extra)
    return env


def _one_line(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert result.returncode not in (0, None), result.stderr
    assert "Traceback" not in result.stderr and '"where"' not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("command", [("serve",), ("serve", "--workers", "2"), ("link-worker",)])
def test_redis_that_does_not_answer_is_one_line_without_its_password(tmp_path, command):
    password = "pw-" + secrets.token_hex(8)
    port = free_port()
    env = _env(tmp_path, TESSERA_BROKER_REDIS_URL=f"redis://:{password}@127.0.0.1:{port}/0")
    assert _run("init", env=env).returncode == 0
    line = _one_line(_run(*command, env=env), f"Redis at 127.0.0.1:{port} does not answer")
    assert password not in line


def test_a_cluster_that_does_not_answer_is_one_line(tmp_path):
    port = free_port()
    env = _env(
        tmp_path,
        TESSERA_BROKER_REDIS_URL=f"redis://127.0.0.1:{port}",
        TESSERA_BROKER_REDIS_CLUSTER="true",
    )
    _one_line(_run("serve", env=env), f"the Redis Cluster node at 127.0.0.1:{port} does not answer")


@pytest.mark.parametrize("command", [("serve",), ("serve", "--workers", "2"), ("link-worker",)])
def test_a_store_of_a_newer_schema_version_is_one_line(tmp_path, private_redis, command):
    with Store(private_redis.url) as store:
        store.redis.flushdb()
        store.redis.set(keyspace.schema_version(), SCHEMA_VERSION + 1)
    env = _env(tmp_path, TESSERA_BROKER_REDIS_URL=private_redis.url)
    assert _run("init", env=env).returncode == 0
    _one_line(_run(*command, env=env), f"schema version {SCHEMA_VERSION + 1}", "newer")


def test_unreadable_tls_files_are_one_line(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("not a certificate\n")
    key.write_text("not a key\n")
    env = _env(tmp_path, TESSERA_BROKER_TLS_CERT=str(cert), TESSERA_BROKER_TLS_KEY=str(key))
    _one_line(_run("serve", "--workers", "2", env=env), "TESSERA_BROKER_TLS")


def test_a_port_in_use_is_one_line_with_several_workers(tmp_path, broker_server):
    taken = broker_server.url.rsplit(":", 1)[1]
    env = _env(tmp_path, TESSERA_BROKER_PORT=taken)
    _one_line(_run("serve", "--workers", "2", env=env), f"127.0.0.1:{taken}: in use")


def test_a_link_worker_without_a_serving_broker_is_one_line(tmp_path):
    env = _env(tmp_path)
    assert _run("init", env=env).returncode == 0
    _one_line(_run("link-worker", env=env), "no broker is serving", "tessera-broker serve")


def test_a_link_worker_without_broker_data_is_one_line(tmp_path):
    _one_line(_run("link-worker", env=_env(tmp_path)), "no broker data at")
