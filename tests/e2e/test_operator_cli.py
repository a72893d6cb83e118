"""`tessera-broker` and `tessera-sdk` as a new operator meets them: where the broker's data
is, what `serve` says when it cannot start, and one-line errors instead of tracebacks."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

from tests.support.harness import free_port

BIN = Path(sys.executable).parent


def run(tool: str, *args: str, env: dict[str, str], cwd: Path | None = None):
    return subprocess.run(
        [str(BIN / tool), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _one_line_error(result, *needles: str) -> str:
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _fresh_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TESSERA_")}
    env["TESSERA_BROKER_KEYSTORE_PASSPHRASE"] = "test-" + secrets.token_hex(12)
    env.update(extra)
    return env


def test_commands_run_elsewhere_never_create_a_second_broker(broker_server, tmp_path):
    """The README's relative data directory, from another directory: refused, nothing made."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = broker_server.admin_env()
    env["TESSERA_BROKER_DATA_DIR"] = "var/tessera"
    for command in (["report"], ["admin", "org", "add", "gp-z"], ["audit", "verify"]):
        result = run("tessera-broker", *command, env=env, cwd=elsewhere)
        _one_line_error(result, f"no broker data at {elsewhere / 'var' / 'tessera'}")
        assert result.returncode == 22
        assert not result.stdout.strip()  # no credential the serving broker would reject
    assert not (elsewhere / "var").exists()


def test_init_creates_the_data_directory_and_then_commands_find_it(tmp_path):
    env = _fresh_env(TESSERA_BROKER_DATA_DIR=str(tmp_path / "broker"))
    made = run("tessera-broker", "init", env=env)
    assert made.returncode == 0, made.stderr
    assert f"{tmp_path / 'broker'}: initialised" in made.stderr
    assert (tmp_path / "broker" / "broker.tks").is_file()
    again = run("tessera-broker", "init", env=env)
    assert again.returncode == 0 and "already holds broker data" in again.stderr
    wrong = {**env, "TESSERA_BROKER_KEYSTORE_PASSPHRASE": "test-" + secrets.token_hex(12)}
    _one_line_error(run("tessera-broker", "init", env=wrong), "does not open")


def test_serve_with_a_wrong_passphrase_exits_at_once_with_one_line(broker_server):
    """A rerun with new passphrases over old data: the reason on stderr, not only a log."""
    env = broker_server.admin_env()
    env["TESSERA_BROKER_KEYSTORE_PASSPHRASE"] = "test-" + secrets.token_hex(12)
    env["TESSERA_BROKER_PORT"] = str(free_port())
    result = run("tessera-broker", "serve", env=env)
    line = _one_line_error(result, "does not open with TESSERA_BROKER_KEYSTORE_PASSPHRASE")
    assert str(broker_server.data_dir.absolute()) in line
    assert env["TESSERA_BROKER_KEYSTORE_PASSPHRASE"] not in result.stderr


def test_serve_refuses_a_bad_or_taken_port_with_one_line(broker_server, tmp_path):
    env = _fresh_env(TESSERA_BROKER_DATA_DIR=str(tmp_path / "b"))
    result = run("tessera-broker", "serve", "--port", "99999", env=env)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "99999" in result.stderr and "1<=x<=65535" in result.stderr
    env["TESSERA_BROKER_PORT"] = "99999"
    _one_line_error(run("tessera-broker", "serve", env=env), "port 99999 is out of range")
    taken = broker_server.url.rsplit(":", 1)[1]
    result = run("tessera-broker", "serve", "--port", taken, env=env)
    _one_line_error(result, f"cannot listen on 127.0.0.1:{taken}: in use")
    assert not (tmp_path / "b").exists()


def test_a_malformed_broker_url_is_one_line(broker_server):
    org, credential = broker_server.add_org()
    env = broker_server.sdk_env(credential)
    port = broker_server.url.rsplit(":", 1)[1]
    for url, reason in (
        (f"127.0.0.1:{port}", "must start with http:// or https://"),
        ("localhost", "must start with http:// or https://"),
        ("ftp://broker.example", "must start with http:// or https://"),
        ("http://", "names no valid host"),
        ("http://a b", "names no valid host"),
        ("http://[::1", "does not parse"),
    ):
        result = run("tessera-sdk", "whoami", "--broker", url, env=env)
        _one_line_error(result, reason)
        assert result.returncode == 11
    ok = run("tessera-sdk", "whoami", "--broker", broker_server.url + "/", env=env)
    assert ok.returncode == 0 and org in ok.stdout


def test_audit_export_to_an_unwritable_path_is_one_line(broker_server, tmp_path):
    env = broker_server.admin_env()
    target = tmp_path / "no-such-dir" / "audit.jsonl"
    result = run("tessera-broker", "audit", "export", "--out", str(target), env=env)
    _one_line_error(result, "cannot use", str(target.parent))
    assert result.returncode == 74
    result = run("tessera-broker", "audit", "export", "--out", "/proc/audit.jsonl", env=env)
    _one_line_error(result, "/proc/audit.jsonl")
