from __future__ import annotations

import os
import socket
import stat
import subprocess
from pathlib import Path

import httpx
import pytest

from broker.store.embedded import EmbeddedRedis, _is_our_server, find_redis_server
from tests.support.harness import running_broker


def _ping(path: str) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(path)
        sock.sendall(b"PING\r\n")
        return sock.recv(16)


def test_binary_is_found() -> None:
    assert find_redis_server().name == "redis-server"


def test_starts_with_aof_and_stops_without_orphan(fresh_redis_dir) -> None:
    server = EmbeddedRedis(fresh_redis_dir).start()
    pid = server.pid
    assert pid is not None
    assert _ping(str(server.socket_path)).startswith(b"+PONG")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(str(server.socket_path))
        sock.sendall(b"CONFIG GET appendonly\r\n")
        assert b"yes" in sock.recv(128)
    server.stop()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_stale_server_from_a_crashed_owner_is_replaced(fresh_redis_dir) -> None:
    first = EmbeddedRedis(fresh_redis_dir).start()
    stale, first._process = first._process, None  # the owner "crashes" without stopping it
    assert stale is not None
    second = EmbeddedRedis(fresh_redis_dir).start()
    try:
        assert stale.wait(5) == 0  # the stale server was shut down, not orphaned
        assert second.pid != stale.pid
        assert _ping(str(second.socket_path)).startswith(b"+PONG")
    finally:
        second.stop()


def _command(path: Path, *words: str) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(str(path))
        sock.sendall(" ".join(words).encode() + b"\r\n")
        return sock.recv(4096)


def _unrelated_process() -> subprocess.Popen[bytes]:
    return subprocess.Popen(["sleep", "300"], stdin=subprocess.DEVNULL)


def test_a_stale_pid_file_naming_another_process_gets_it_no_signal(fresh_redis_dir) -> None:
    bystander = _unrelated_process()
    try:
        fresh_redis_dir.mkdir(parents=True, exist_ok=True)
        (fresh_redis_dir / "redis.pid").write_text(f"{bystander.pid}\n")
        server = EmbeddedRedis(fresh_redis_dir).start()
        try:
            assert bystander.poll() is None  # not SIGTERMed
            assert int((fresh_redis_dir / "redis.pid").read_text()) == server.pid
        finally:
            server.stop()
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


def test_serve_leaves_the_process_a_stale_pid_file_names_alone(tmp_path) -> None:
    bystander = _unrelated_process()
    try:
        redis_dir = tmp_path / "broker" / "redis"
        redis_dir.mkdir(parents=True)
        (redis_dir / "redis.pid").write_text(f"{bystander.pid}\n")
        with running_broker(tmp_path / "broker") as broker:
            assert httpx.get(broker.url + "/readyz", timeout=5).status_code == 200
            assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


def test_files_are_private_and_memory_never_evicts(fresh_redis_dir) -> None:
    fresh_redis_dir.mkdir(parents=True, mode=0o755, exist_ok=True)
    fresh_redis_dir.chmod(0o755)
    older = fresh_redis_dir / "redis.log"
    older.write_text("left by an older broker\n")
    older.chmod(0o644)
    server = EmbeddedRedis(fresh_redis_dir, maxmemory=64 * 1024 * 1024).start()
    try:
        assert _command(server.socket_path, "SET", "k", "v").startswith(b"+OK")
        _command(server.socket_path, "BGREWRITEAOF")
        assert b"67108864" in _command(server.socket_path, "CONFIG", "GET", "maxmemory")
        policy = _command(server.socket_path, "CONFIG", "GET", "maxmemory-policy")
        assert b"noeviction" in policy
        assert stat.S_IMODE(fresh_redis_dir.stat().st_mode) == 0o700
        written = [p for p in fresh_redis_dir.iterdir() if p.is_file() and p.name != "redis.sock"]
        assert {"appendonly.aof", "redis.log", "redis.pid"} <= {p.name for p in written}
        for path in written:
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name
    finally:
        server.stop()


def test_the_server_does_not_inherit_the_brokers_environment(fresh_redis_dir, monkeypatch):
    monkeypatch.setenv("TESSERA_BROKER_KEYSTORE_PASSPHRASE", "a-passphrase-of-the-broker")
    server = EmbeddedRedis(fresh_redis_dir).start()
    try:
        environ = Path(f"/proc/{server.pid}/environ").read_bytes()
        assert b"a-passphrase-of-the-broker" not in environ
        assert b"TESSERA_" not in environ
    finally:
        server.stop()


def test_serve_runs_redis_without_its_passphrase_with_private_files(tmp_path) -> None:
    with running_broker(tmp_path / "broker", TESSERA_BROKER_REDIS_MAXMEMORY_MB="128") as broker:
        passphrase = broker.env["TESSERA_BROKER_KEYSTORE_PASSPHRASE"].encode()
        redis_dir = broker.data_dir / "redis"
        pid = int((redis_dir / "redis.pid").read_text())
        assert Path(os.readlink(f"/proc/{pid}/cwd")) == redis_dir.resolve()
        assert passphrase not in Path(f"/proc/{pid}/environ").read_bytes()
        assert passphrase not in Path(f"/proc/{pid}/cmdline").read_bytes()
        maxmemory = _command(redis_dir / "redis.sock", "CONFIG", "GET", "maxmemory")
        assert str(128 * 1024 * 1024).encode() in maxmemory
        for name in ("appendonly.aof", "redis.log"):
            assert stat.S_IMODE((redis_dir / name).stat().st_mode) == 0o600, name
        assert stat.S_IMODE(redis_dir.stat().st_mode) == 0o700


def test_without_proc_only_the_server_on_our_socket_counts_as_ours(fresh_redis_dir) -> None:
    server = EmbeddedRedis(fresh_redis_dir).start()
    bystander = _unrelated_process()
    no_proc = fresh_redis_dir.parent / "no-proc"
    try:
        assert server.pid is not None
        for proc_root in (Path("/proc"), no_proc):
            ours = _is_our_server(
                server.pid, server.data_dir, server.socket_path, proc_root=proc_root
            )
            theirs = _is_our_server(
                bystander.pid, server.data_dir, server.socket_path, proc_root=proc_root
            )
            assert ours and not theirs, proc_root
    finally:
        bystander.kill()
        bystander.wait()
        server.stop()
