"""Settings of the broker: one pydantic-settings class, from ``TESSERA_BROKER_*``."""

from __future__ import annotations

import os
import ssl
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SecretsSettingsSource,
    SettingsConfigDict,
)

from broker.errors import ConfigurationError
from broker.redis_target import REDIS_SCHEMES, RedisTarget, parse_sentinels

__all__ = [
    "MIN_PASSPHRASE_LENGTH",
    "PLACEHOLDER_PASSPHRASES",
    "SECRETS_DIR_VARIABLE",
    "BrokerSettings",
]

SECRETS_DIR_VARIABLE = "TESSERA_BROKER_SECRETS_DIR"
"""A directory of one file per setting (its variable's name, lower case), read after the
environment: Docker/Kubernetes secrets or systemd credentials."""

PLACEHOLDER_PASSPHRASES = frozenset(
    {"", "changeme", "change-me", "changethis", "password", "secret", "tessera", "example"}
)
MIN_PASSPHRASE_LENGTH = 16
"""Shortest keystore passphrase accepted outside development mode (characters)."""

FaultPoint = Literal[
    "", "commit.queued", "commit.committed", "link.paused", "rotation.carried", "rotation.switched"
]


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

        tls_cert: PEM certificate chain ``serve`` presents (HTTPS); with ``tls_key``.
        tls_key: PEM private key of ``tls_cert`` (a file only the broker's user reads).
        tls_client_ca: PEM CA bundle; when set, every client must present a certificate
            it signed (mutual TLS, as on the HSCN).
        metrics_token: a bearer token that may read ``/metrics`` (for a Prometheus
            scraper); without it only an administrator's credential may.

    State, processes and secrets at rest (these four belong together):

    Attributes:
        redis_maxmemory_mb: memory the embedded redis-server may hold before it refuses
            writes (``noeviction``: linkage data is never evicted); default half the
            machine's memory.
        sign_in_max_failures: failed dashboard sign-ins from one client address before
            it is locked out.
        sign_in_lockout_seconds: how long failures count, and how long a lockout lasts.
        link_slice_records: records the link worker applies in one atomic slice.
        link_worker: run a link worker inside each API process (``serve``); by default
            on for one process and off for ``serve --workers N`` (run ``link-worker``).
        link_lease_seconds: how long a link worker's lease on a linkage scope lasts
            without renewal: a scope whose worker died is taken over after this long.
        redis_wait_replicas: before a commit is acknowledged, wait (Redis ``WAIT``) until
            this many replicas of its master hold it; 0 does not wait (docs/api.md).
        redis_wait_timeout_ms: how long a commit waits for them before it fails (503).
        fault_point: tests only, and only with ``development``: the process exits at
            once at this point of a commit, as a crash would (``commit.*``), or the link
            worker pauses after a batch's first slice until it is stopped
            (``link.paused``), or a key rotation's switch exits after carrying person ids
            over (``rotation.carried``) or after making the new scope active
            (``rotation.switched``).

    Redis (docs/keyspace.md, "Running on a Redis Cluster"; broker/store/connect.py):

    Attributes:
        redis_ca: CA bundle that signs the Redis server's certificate (``rediss://``).
        redis_cluster: ``redis_url`` is a node of a Redis Cluster.
        redis_sentinel: ``host:port,host:port`` of the Sentinels that watch the master
            (``redis_url`` is then left unset).
        redis_sentinel_master: the master's name the Sentinels monitor.
        redis_password: with Sentinel, the password of the master and its replicas (a
            ``redis_url`` carries its own).
        redis_sentinel_password: with Sentinel, the Sentinels' own password.
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
    link_worker: bool | None = None
    link_lease_seconds: float = Field(default=30.0, ge=1.0, le=3600.0)
    redis_wait_replicas: int = Field(default=0, ge=0, le=16)
    redis_wait_timeout_ms: int = Field(default=5000, ge=1)
    fault_point: FaultPoint = ""

    # Transport and monitoring (docs/deploy.md) --------------------------------------------
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    metrics_token: SecretStr | None = None

    # Redis: TLS, Cluster, Sentinel ----------------------------------------------------------
    redis_ca: Path | None = None
    redis_cluster: bool = False
    redis_sentinel: str = ""
    redis_sentinel_master: str = ""
    redis_password: SecretStr | None = None
    redis_sentinel_password: SecretStr | None = None

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

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments, then the environment, then files under ``TESSERA_BROKER_SECRETS_DIR``.

        A file there named like the variable (``tessera_broker_keystore_passphrase``) holds
        that setting, as Docker and Kubernetes secrets and systemd's ``LoadCredential=``
        provide them, so no secret need sit in an environment block (docs/deploy.md).
        """
        directory = os.environ.get(SECRETS_DIR_VARIABLE)
        if not directory:
            return (init_settings, env_settings)
        if not Path(directory).is_dir():
            raise ConfigurationError(f"{SECRETS_DIR_VARIABLE}: {directory} is not a directory")
        return (init_settings, env_settings, SecretsSettingsSource(settings_cls, directory))

    @model_validator(mode="after")
    def _check_tls_files(self) -> Self:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError(
                "set both TESSERA_BROKER_TLS_CERT and TESSERA_BROKER_TLS_KEY, or neither"
            )
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise ValueError("TESSERA_BROKER_TLS_CLIENT_CA needs TESSERA_BROKER_TLS_CERT and _KEY")
        for name, path in (
            ("TLS_CERT", self.tls_cert),
            ("TLS_KEY", self.tls_key),
            ("TLS_CLIENT_CA", self.tls_client_ca),
        ):
            if path is not None and not path.is_file():
                raise ValueError(f"TESSERA_BROKER_{name}: {path} is not a readable file")
        if self.tls_cert is not None and self.tls_key is not None:
            _check_key_pair(self.tls_cert, self.tls_key, self.tls_client_ca)
        token = self.metrics_token.get_secret_value() if self.metrics_token is not None else None
        if token is not None and len(token) < 24:
            raise ValueError("TESSERA_BROKER_METRICS_TOKEN must be at least 24 characters")
        return self

    def uvicorn_tls_options(self) -> dict[str, Any]:
        """The ``uvicorn.run`` keywords that serve HTTPS (empty for plain HTTP)."""
        if self.tls_cert is None or self.tls_key is None:
            return {}
        options: dict[str, Any] = {
            "ssl_certfile": str(self.tls_cert),
            "ssl_keyfile": str(self.tls_key),
        }
        if self.tls_client_ca is not None:
            options["ssl_ca_certs"] = str(self.tls_client_ca)
            options["ssl_cert_reqs"] = ssl.CERT_REQUIRED
        return options

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
        elif self.redis_password is not None or self.redis_sentinel_password is not None:
            raise ValueError(
                "TESSERA_BROKER_REDIS_PASSWORD and _REDIS_SENTINEL_PASSWORD are for Sentinel; "
                "put the password of a TESSERA_BROKER_REDIS_URL in the URL"
            )
        return self

    @property
    def redis_target(self) -> RedisTarget | None:
        """How to reach an external Redis; ``None`` for the embedded redis-server."""
        if self.redis_sentinel:
            password, sentinel_password = self.redis_password, self.redis_sentinel_password
            return RedisTarget(
                sentinels=parse_sentinels(self.redis_sentinel),
                sentinel_master=self.redis_sentinel_master,
                password=password.get_secret_value() if password is not None else "",
                sentinel_password=(
                    sentinel_password.get_secret_value() if sentinel_password is not None else ""
                ),
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


def _check_key_pair(cert: Path, key: Path, client_ca: Path | None) -> None:
    """Load the certificate, key and client CA as uvicorn will, for a one-line error now."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or type(exc).__name__
        raise ValueError(
            f"TESSERA_BROKER_TLS_CERT/_KEY: cannot load the certificate and key ({reason})"
        ) from None
    if client_ca is not None:
        try:
            context.load_verify_locations(cafile=client_ca)
        except (ssl.SSLError, OSError) as exc:
            reason = getattr(exc, "reason", None) or type(exc).__name__
            raise ValueError(f"TESSERA_BROKER_TLS_CLIENT_CA: cannot load it ({reason})") from None
