"""Settings of the broker: one pydantic-settings class, from ``TESSERA_BROKER_*``."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from broker.store.connect import REDIS_SCHEMES, RedisTarget, parse_sentinels

__all__ = ["MIN_PASSPHRASE_LENGTH", "PLACEHOLDER_PASSPHRASES", "BrokerSettings"]

PLACEHOLDER_PASSPHRASES = frozenset(
    {"", "changeme", "change-me", "changethis", "password", "secret", "tessera", "example"}
)
MIN_PASSPHRASE_LENGTH = 16
"""Shortest keystore passphrase accepted outside development mode (characters)."""

FaultPoint = Literal["", "commit.queued", "commit.committed", "link.paused"]


class BrokerSettings(BaseSettings):
    """Everything ``tessera-broker`` reads from its environment.

    Attributes:
        redis_url: an external Redis (``redis://``, ``rediss://`` or ``unix://``; any
            node of a cluster); ``None`` starts the embedded redis-server under
            ``data_dir``. See "Redis" below for TLS, Cluster and Sentinel.
        data_dir: the broker's own directory (embedded Redis data, keystore).
        host: address uvicorn binds.
        port: port uvicorn binds.
        keystore_path: the broker's encrypted keystore (default ``data_dir/broker.tks``).
        keystore_passphrase: unlocks it; refused when missing or a placeholder, unless
            ``development`` is set.
        development: allow placeholder secrets (never in production).
        durable_writes: run the embedded redis-server with ``appendfsync always`` so
            that every acknowledged write is on disk (see docs/api.md).
        max_chunk_bytes: largest compressed chunk accepted.
        max_chunk_records: most records per chunk.
        max_batch_chunks: most chunks per batch.
        max_json_bytes: largest request body other than a chunk (a manifest lists 65
            bytes per chunk, so the default admits batches of 100 000 chunks).
        receiving_ttl_seconds: how long an uncommitted batch is kept for resumption.
        audit_checkpoint_every: entries between signed audit checkpoints.
        audit_checkpoint_max_age_seconds: also checkpoint the newest audit entry when an
            entry has waited this long for a checkpoint.
        session_ttl_seconds: idle lifetime of an operator dashboard session.
        debug: log at DEBUG level with full tracebacks (``serve --debug`` sets it too).
        api_docs: serve Swagger UI at ``/docs`` and ReDoc at ``/redoc`` (they load their
            scripts from a CDN); off unless ``development`` is set. ``/openapi.json`` is
            always served.
        header_read_timeout_seconds: a connection must send a request's headers within
            this long (slow-header clients are disconnected).
        body_read_timeout_seconds: a request body must arrive whole within this long
            (else 408).
        keep_alive_timeout_seconds: an idle keep-alive connection is closed after this.
        max_connections: connections (and requests in flight) one process serves at
            once; beyond it uvicorn answers 503.
        auth_failure_window_seconds: the window over which bearer-credential failures
            are counted.
        max_auth_failures_per_address: failures from one client address in a window
            before it is locked out (429) until the window ends.
        max_auth_failures_per_credential: failures of one presented credential in a
            window before it is locked out.
        max_open_batches_per_org: batches an organisation may hold open (not committed).
        max_datasets_per_org: datasets an organisation may declare.
        max_domains_per_org: distinct linkage domains an organisation's datasets use.

    State, processes and secrets at rest (these four belong together):

    Attributes:
        redis_maxmemory_mb: memory the embedded redis-server may hold before it refuses
            writes (``noeviction``: linkage data is never evicted); default half the
            machine's memory.
        sign_in_max_failures: failed dashboard sign-ins from one client address before
            it is locked out.
        sign_in_lockout_seconds: how long failures count, and how long a lockout lasts.
        link_slice_records: records the link worker applies in one atomic slice.
        fault_point: tests only, and only with ``development``: the process exits at
            once at this point of a commit, as a crash would (``commit.*``), or the link
            worker pauses after a batch's first slice until it is stopped
            (``link.paused``).

    Redis (docs/keyspace.md, "Running on a Redis Cluster"; broker/store/connect.py):

    Attributes:
        redis_ca: CA bundle that signs the Redis server's certificate (``rediss://``).
        redis_cluster: ``redis_url`` is a node of a Redis Cluster.
        redis_sentinel: ``host:port,host:port`` of the Sentinels that watch the master
            (``redis_url`` is then left unset).
        redis_sentinel_master: the master's name the Sentinels monitor.
    """

    model_config = SettingsConfigDict(env_prefix="TESSERA_BROKER_", extra="ignore")

    redis_url: str | None = None
    data_dir: Path = Path("./var/tessera")
    host: str = "127.0.0.1"
    port: int = 8470
    keystore_path: Path | None = None
    keystore_passphrase: SecretStr | None = None
    development: bool = False
    durable_writes: bool = True
    max_chunk_bytes: int = 16 * 1024 * 1024
    max_chunk_records: int = 100_000
    max_batch_chunks: int = 100_000
    max_json_bytes: int = 8 * 1024 * 1024
    receiving_ttl_seconds: int = 7 * 24 * 3600
    audit_checkpoint_every: int = Field(default=1000, ge=1)
    audit_checkpoint_max_age_seconds: int = Field(default=3600, ge=1)
    session_ttl_seconds: int = Field(default=1800, ge=60)
    debug: bool = False
    api_docs: bool | None = None
    header_read_timeout_seconds: float = Field(default=10.0, gt=0)
    body_read_timeout_seconds: float = Field(default=120.0, gt=0)
    keep_alive_timeout_seconds: int = Field(default=5, ge=1)
    max_connections: int = Field(default=256, ge=1)
    auth_failure_window_seconds: int = Field(default=300, ge=1)
    max_auth_failures_per_address: int = Field(default=100, ge=1)
    max_auth_failures_per_credential: int = Field(default=10, ge=1)
    max_open_batches_per_org: int = Field(default=50, ge=1)
    max_datasets_per_org: int = Field(default=200, ge=1)
    max_domains_per_org: int = Field(default=16, ge=1)

    # State, processes and secrets at rest ----------------------------------------------
    redis_maxmemory_mb: int | None = Field(default=None, ge=16)
    sign_in_max_failures: int = Field(default=5, ge=1)
    sign_in_lockout_seconds: int = Field(default=900, ge=1)
    link_slice_records: int = Field(default=50_000, ge=1)
    fault_point: FaultPoint = ""

    # Redis: TLS, Cluster, Sentinel ----------------------------------------------------------
    redis_ca: Path | None = None
    redis_cluster: bool = False
    redis_sentinel: str = ""
    redis_sentinel_master: str = ""

    @model_validator(mode="after")
    def _refuse_placeholder_secrets(self) -> Self:
        secret = self.keystore_passphrase
        value = secret.get_secret_value() if secret is not None else ""
        if not self.development and value.strip().lower() in PLACEHOLDER_PASSPHRASES:
            raise ValueError(
                "TESSERA_BROKER_KEYSTORE_PASSPHRASE is missing or a placeholder; set a real "
                "passphrase (or TESSERA_BROKER_DEVELOPMENT=1 on a test machine)"
            )
        if not self.development and len(value) < MIN_PASSPHRASE_LENGTH:
            raise ValueError(
                "TESSERA_BROKER_KEYSTORE_PASSPHRASE is shorter than "
                f"{MIN_PASSPHRASE_LENGTH} characters; use a longer one"
            )
        return self

    @model_validator(mode="after")
    def _check_redis(self) -> Self:
        url, scheme = self.redis_url, (self.redis_url or "").partition("://")[0]
        if url is not None and scheme not in REDIS_SCHEMES:
            raise ValueError(
                "TESSERA_BROKER_REDIS_URL must start with redis://, rediss:// or unix://"
            )
        if self.redis_ca is not None and scheme != "rediss":
            raise ValueError("TESSERA_BROKER_REDIS_CA needs a rediss:// TESSERA_BROKER_REDIS_URL")
        if self.redis_ca is not None and not self.redis_ca.is_file():
            raise ValueError(f"TESSERA_BROKER_REDIS_CA: no file at {self.redis_ca}")
        if self.redis_cluster and self.redis_sentinel:
            raise ValueError(
                "set TESSERA_BROKER_REDIS_CLUSTER or TESSERA_BROKER_REDIS_SENTINEL, not both"
            )
        if self.redis_cluster and scheme not in ("redis", "rediss"):
            raise ValueError(
                "TESSERA_BROKER_REDIS_CLUSTER needs TESSERA_BROKER_REDIS_URL=redis://host:port "
                "(or rediss://) of one cluster node"
            )
        if self.redis_sentinel:
            parse_sentinels(self.redis_sentinel)
            if not self.redis_sentinel_master:
                raise ValueError(
                    "TESSERA_BROKER_REDIS_SENTINEL needs TESSERA_BROKER_REDIS_SENTINEL_MASTER"
                )
            if url is not None:
                raise ValueError(
                    "with TESSERA_BROKER_REDIS_SENTINEL leave TESSERA_BROKER_REDIS_URL unset: "
                    "the sentinels name the master"
                )
        elif self.redis_sentinel_master:
            raise ValueError(
                "TESSERA_BROKER_REDIS_SENTINEL_MASTER needs TESSERA_BROKER_REDIS_SENTINEL"
            )
        return self

    @property
    def redis_target(self) -> RedisTarget | None:
        """How to reach an external Redis; ``None`` for the embedded redis-server."""
        if self.redis_sentinel:
            return RedisTarget(
                sentinels=parse_sentinels(self.redis_sentinel),
                sentinel_master=self.redis_sentinel_master,
            )
        if self.redis_url is None:
            return None
        return RedisTarget(self.redis_url, ca_file=self.redis_ca, cluster=self.redis_cluster)

    @property
    def serves_api_docs(self) -> bool:
        """Whether ``/docs`` and ``/redoc`` are served (default: in development only)."""
        return self.development if self.api_docs is None else self.api_docs

    @property
    def resolved_keystore_path(self) -> Path:
        """The keystore path, defaulting to ``data_dir/broker.tks``."""
        return self.keystore_path or self.data_dir / "broker.tks"

    @property
    def redis_maxmemory(self) -> int | None:
        """``redis_maxmemory_mb`` in bytes (``None``: the embedded server's default)."""
        return self.redis_maxmemory_mb * 1024 * 1024 if self.redis_maxmemory_mb else None

    @property
    def redis_dir(self) -> Path:
        """Where the embedded redis-server keeps its data."""
        return self.data_dir / "redis"
