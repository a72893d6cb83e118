"""Helpers for tests that need a real broker: start one, make credentials, write batches.

The session fixture ``broker_server`` (tests/conftest.py) builds on :class:`BrokerProcess`;
tests that kill or restart a broker start their own with :func:`start_broker`.
"""

from __future__ import annotations

import contextlib
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx

from broker.config import BrokerSettings
from broker.runtime import BrokerRuntime, new_credential, utc_now
from broker.store.identities import create_identity, find_identity, revoke_identity
from keys.batch import BatchManifest, BatchWriter
from keys.chunk import TokenChunk
from keys.derive import RecordRef, Token
from keys.wire import DatasetDeclaration, Role

__all__ = [
    "BrokerProcess",
    "free_port",
    "make_batch",
    "random_refs",
    "random_tokens",
    "running_broker",
    "start_broker",
    "unique",
]


# Below the kernel's ephemeral range (32768 and up on Linux), and low enough that a Redis
# Cluster node's bus port (10000 above) is out of this range and out of the ephemeral one.
_LOW_PORT, _HIGH_PORT = 12000, 22000
_ports_given: set[int] = set()


def free_port() -> int:
    """A TCP port nothing listens on right now, and that nothing else will be handed.

    A port the kernel picks (bind to 0) is an ephemeral one: between this call and the
    test's use of it, any outgoing connection on the machine may take it as its local port,
    and another test worker may be handed it again (seen in CI: a broker refused to start
    with "cannot listen ...: in use"). So ports come from a range the kernel never hands out,
    each xdist worker from its own slice, never twice per process.
    """
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    workers = max(int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")), worker + 1)
    width = (_HIGH_PORT - _LOW_PORT) // workers
    low = _LOW_PORT + worker * width
    start = secrets.randbelow(width)
    for step in range(width):
        port = low + (start + step) % width
        if port in _ports_given:
            continue
        with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _ports_given.add(port)
        return port
    raise RuntimeError(f"no free port in {low}..{low + width - 1}")


def unique(prefix: str) -> str:
    """A name no other test uses (orgs, datasets, researchers)."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@dataclass
class BrokerProcess:
    """A ``tessera-broker serve`` subprocess with its own data directory and embedded Redis.

    Attributes:
        url: base URL of the HTTP API.
        data_dir: the broker's data directory (keystore, redis/).
        env: the ``TESSERA_BROKER_*`` environment it runs with (for ``tessera-broker admin``
            subprocesses too).
        log_path: where its JSON log lines go.
        serve_args: options after ``serve`` (``--workers 2``, ``--no-link-worker``).
    """

    url: str
    data_dir: Path
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    serve_args: tuple[str, ...] = ()
    _runtime: BrokerRuntime | None = field(default=None, repr=False)

    @property
    def redis_url(self) -> str:
        """The embedded redis-server's URL (unix socket)."""
        return f"unix://{(self.data_dir / 'redis' / 'redis.sock').resolve()}"

    def settings(self) -> BrokerSettings:
        """The broker's settings, as the subprocess reads them."""
        return BrokerSettings(
            data_dir=self.data_dir,
            keystore_passphrase=self.env["TESSERA_BROKER_KEYSTORE_PASSPHRASE"],
        )

    @property
    def runtime(self) -> BrokerRuntime:
        """An in-process runtime attached to the broker's Redis (opened once)."""
        if self._runtime is None:
            self._runtime = BrokerRuntime.open(self.settings(), attach=True)
        return self._runtime

    def add_identity(self, role: Role, name: str) -> str:
        """Create an identity directly in the store; returns its new credential."""
        credential = new_credential()
        create_identity(
            self.runtime.store,
            identity_id="id_" + secrets.token_hex(8),
            name=name,
            role=role,
            digest=self.runtime.credential_digest(credential),
            now=utc_now(),
        )
        return credential

    def add_org(self, name: str | None = None) -> tuple[str, str]:
        """A new organisation: ``(name, credential)``."""
        org = name or unique("org")
        return org, self.add_identity(Role.ORG, org)

    def revoke(self, name: str) -> None:
        """Revoke an identity's credential."""
        revoke_identity(self.runtime.store, find_identity(self.runtime.store, name))

    def client(self, credential: str | None = None) -> httpx.Client:
        """An httpx client for the API, with the credential as bearer token if given."""
        headers = {"Authorization": f"Bearer {credential}"} if credential else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def sdk_env(self, credential: str) -> dict[str, str]:
        """Environment for a ``tessera-sdk`` subprocess talking to this broker."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("TESSERA_")}
        env.update({"TESSERA_SDK_TOKEN": credential, "TESSERA_SDK_BROKER_URL": self.url})
        return env

    def admin_env(self) -> dict[str, str]:
        """Environment for a ``tessera-broker admin`` subprocess on this broker's host."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("TESSERA_")}
        env.update(self.env)
        return env

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Wait until ``/readyz`` answers 200."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"broker exited at start; see {self.log_path}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"broker not ready in {timeout}s; see {self.log_path}")

    def start(self) -> None:
        """Start (or restart) the serving subprocess and wait until it is ready."""
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from broker.cli import main; main()",
                "serve",
                *self.serve_args,
            ],
            env=self.admin_env(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
        log.close()
        self.wait_ready()

    def stop(self) -> None:
        """SIGTERM the broker (it stops its redis-server) and wait."""
        self.close_runtime()
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        """SIGKILL the broker process, as a crash would (its redis-server survives)."""
        self.close_runtime()
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def close_runtime(self) -> None:
        """Close the in-process runtime's connections (never stops the broker's Redis)."""
        if self._runtime is not None:
            self._runtime.close()
            self._runtime = None

    def log_text(self) -> str:
        """Everything the broker logged."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def start_broker(data_dir: Path, **extra_env: str) -> BrokerProcess:
    """Start a broker on a free port with its own data directory and embedded Redis."""
    return start_serving(data_dir, (), extra_env)


def start_serving(
    data_dir: Path, serve_args: tuple[str, ...], extra_env: dict[str, str]
) -> BrokerProcess:
    """:func:`start_broker` with options after ``serve`` (``--workers 2``)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {
        "TESSERA_BROKER_DATA_DIR": str(data_dir),
        "TESSERA_BROKER_PORT": str(port),
        "TESSERA_BROKER_HOST": "127.0.0.1",
        "TESSERA_BROKER_KEYSTORE_PASSPHRASE": "test-" + secrets.token_hex(12),
        **extra_env,
    }
    broker = BrokerProcess(
        url=f"http://127.0.0.1:{port}",
        data_dir=data_dir,
        env=env,
        log_path=data_dir / "broker.log",
        serve_args=serve_args,
    )
    broker.start()
    return broker


@contextlib.contextmanager
def running_broker(data_dir: Path, **extra_env: str) -> Iterator[BrokerProcess]:
    """A broker for the duration of a ``with`` block."""
    broker = start_broker(data_dir, **extra_env)
    try:
        yield broker
    finally:
        broker.stop()


def random_refs(n: int, *, seed: int) -> list[RecordRef]:
    """``n`` distinct random references, as an SDK would derive them (keyed hashes)."""
    rng = random.Random(f"refs-{seed}")
    return [RecordRef(rng.randbytes(16)) for _ in range(n)]


def random_tokens(n: int, n_keys: int, *, seed: int) -> list[tuple[Token | None, ...]]:
    """``n`` rows of random 16-byte tokens (key 1 missing on every fifth row)."""
    rng = random.Random(seed)
    rows: list[tuple[Token | None, ...]] = []
    for i in range(n):
        row = tuple(
            None if (k == 1 and i % 5 == 0) else Token(rng.randbytes(16)) for k in range(n_keys)
        )
        rows.append(row)
    return rows


def make_batch(
    path: Path,
    *,
    dataset: str,
    refs: Sequence[RecordRef],
    tokens: Sequence[tuple[Token | None, ...]],
    payload: Sequence[tuple[str | None, ...]] | None = None,
    chunk_size: int = 50,
    domain: str = "test-domain",
    key_version: str = "v1",
    spec_hash: str = "spec-test-1",
    match_keys: Sequence[str] = ("nhs", "name_dob"),
    payload_columns: Sequence[str] = (),
    batch_id: str | None = None,
    quality: dict[str, object] | None = None,
    org: str | None = None,
) -> BatchManifest:
    """Write a batch file of the given records in chunks of ``chunk_size``."""
    rows: list[tuple[str | None, ...]] = list(payload) if payload is not None else [()] * len(refs)
    with BatchWriter(path) as writer:
        for start in range(0, len(refs), chunk_size):
            stop = start + chunk_size
            writer.write_chunk(
                TokenChunk(
                    tuple(match_keys),
                    tuple(payload_columns),
                    list(refs[start:stop]),
                    list(tokens[start:stop]),
                    rows[start:stop],
                )
            )
        manifest = BatchManifest(
            batch_id=batch_id or uuid.uuid4().hex,
            dataset=dataset,
            org=org,
            domain=domain,
            key_version=key_version,
            spec_hash=spec_hash,
            match_keys=list(match_keys),
            payload_columns=list(payload_columns),
            record_count=len(refs),
            chunk_digests=writer.chunk_digests,
            created_at=datetime.now(UTC).isoformat(),
            quality=quality or {},
        )
        writer.finish(manifest)
    return manifest


def declaration_for(manifest: BatchManifest, name: str = "gp") -> DatasetDeclaration:
    """The one-record-per-person dataset a batch's manifest was written for."""
    return DatasetDeclaration(
        name=name,
        one_record_per_person=True,
        domain=manifest.domain,
        spec_hash=manifest.spec_hash,
        key_version=manifest.key_version,
        match_keys=manifest.match_keys,
    )
