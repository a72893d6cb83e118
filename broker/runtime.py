"""What a running broker holds: settings, the store, and its secrets from its keystore.

The HTTP app (broker/app.py) and the operator commands (broker/cli/__init__.py) build one
:class:`BrokerRuntime` each from the same :class:`~broker.config.BrokerSettings`.
"""

from __future__ import annotations

import secrets as _random
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Self

from broker.audit import use_audit_signing_key
from broker.config import BrokerSettings
from broker.errors import ConfigurationError
from broker.store.client import Store, open_store
from broker.store.schema import ensure_schema_version
from keys.derive import AtRestKeyer, EvidenceRekeyer, digest_credential
from keys.keystore import ServiceSecrets, open_service_secrets

__all__ = ["CREDENTIAL_PREFIX", "BrokerRuntime", "new_credential", "utc_now"]

CREDENTIAL_PREFIX = "tsk_"


def new_credential() -> str:
    """A fresh bearer credential: 256 random bits, URL-safe, with a recognisable prefix."""
    return CREDENTIAL_PREFIX + _random.token_urlsafe(32)


def utc_now() -> str:
    """The current time, ISO 8601 in UTC, to the millisecond."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass(slots=True)
class BrokerRuntime:
    """The broker's live state: one per process (the app's lifespan or a CLI command)."""

    settings: BrokerSettings
    store: Store
    secrets: ServiceSecrets
    keyer: AtRestKeyer
    evidence_keyer: EvidenceRekeyer

    @classmethod
    def open(cls, settings: BrokerSettings, *, attach: bool = False) -> Self:
        """Unlock the keystore and open the store (starting embedded Redis if needed).

        Args:
            settings: the broker's settings.
            attach: use an embedded redis-server a serving broker already runs.

        Raises:
            ConfigurationError: no passphrase.
            DecryptionError: the keystore does not open.
            RedisUnavailableError: Redis cannot be reached or started.
        """
        passphrase = settings.keystore_passphrase
        if passphrase is None:
            raise ConfigurationError("set TESSERA_BROKER_KEYSTORE_PASSPHRASE")
        settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        secrets = open_service_secrets(
            settings.resolved_keystore_path, passphrase.get_secret_value()
        )
        store = open_store(
            settings.redis_target,
            redis_dir=settings.redis_dir,
            durable_writes=settings.durable_writes,
            attach=attach,
            maxmemory=settings.redis_maxmemory,
            wait_replicas=settings.redis_wait_replicas,
            wait_timeout_ms=settings.redis_wait_timeout_ms,
        )
        try:
            ensure_schema_version(store)
        except BaseException:
            store.close()
            raise
        use_audit_signing_key(store, secrets.audit_signing_key)  # every entry signed as written
        return cls(
            settings, store, secrets, AtRestKeyer(secrets.rekey), EvidenceRekeyer(secrets.rekey)
        )

    @property
    def session_secret(self) -> bytes:
        """Keys the stored digests of dashboard session ids (:mod:`broker.dashboard`)."""
        return self.secrets.credential

    def credential_digest(self, credential: str) -> str:
        """The keyed digest under which a credential is stored."""
        return digest_credential(self.secrets.credential, credential)

    def close(self) -> None:
        """Close the store (and stop the embedded Redis this runtime started)."""
        self.store.close()
