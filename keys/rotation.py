"""Key lifecycle in the custodian's keystore: rotate, grant and re-wrap, retire.

A domain's versions run v1, v2, …; exactly one is *current* (what new grants use by
default and what organisations should tokenise with). Rotating adds a fresh random version,
makes it current and keeps the old ones *active*, so data already tokenised under them can
still be linked while organisations move over. Retiring a version destroys its key material
(its key id and fingerprint stay, for the record) so it can never be granted again; the
current version cannot be retired.

Every grant is signed by the custodian's identity key, an Ed25519 seed kept in the custodian
keystore under the secret name ``custodian_signing_key``. ``tessera-keys init`` makes it;
:func:`custodian_identity` makes it for a keystore created before grants were signed.
Organisations pin its fingerprint and install nothing it did not sign (keys/wrapping.py).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime

from keys import signing
from keys.errors import KeyManagementError, UnknownKeyError
from keys.keystore import (
    Domain,
    Keystore,
    KeystoreContents,
    KeyVersion,
    Rng,
    get_key_version,
    new_key_version,
)
from keys.wrapping import Kem, OrgPublicKey, custodian_fingerprint, wrap_key

__all__ = [
    "CUSTODIAN_SIGNING_SECRET",
    "Grant",
    "custodian_identity",
    "grant_key",
    "new_custodian_contents",
    "retire_version",
    "rewrap_domain",
    "rotate_domain",
]

CUSTODIAN_SIGNING_SECRET = "custodian_signing_key"

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Grant:
    """A domain key version wrapped for one organisation.

    Attributes:
        domain: linkage domain.
        version: key version label.
        key_id: the version's opaque key id.
        key_fingerprint: the version's fingerprint (the organisation sees the same after
            installing).
        org: the organisation.
        org_fingerprint: fingerprint of the organisation's public keys, to compare with the
            one it read out.
        custodian_fingerprint: fingerprint of the custodian key that signed the grant.
        kem: the KEM used.
        blob: the wrapped key (keys/wrapping.py format).
    """

    domain: str
    version: str
    key_id: str
    key_fingerprint: str
    org: str
    org_fingerprint: str
    custodian_fingerprint: str
    kem: Kem
    blob: bytes


def new_custodian_contents(*, rng: Rng = os.urandom) -> KeystoreContents:
    """The contents of a new custodian keystore: no domains, a fresh identity key."""
    return KeystoreContents(secrets={CUSTODIAN_SIGNING_SECRET: rng(signing.SEED_BYTES)})


def custodian_identity(keystore: Keystore, *, create: bool = False, rng: Rng = os.urandom) -> str:
    """The fingerprint of the custodian's identity key, to read out to every organisation.

    Args:
        keystore: the custodian keystore.
        create: make the key if the keystore has none (one made before grants were signed);
            an existing key is never replaced.
        rng: random source for a new key.

    Raises:
        UnknownKeyError: the keystore has no identity key and ``create`` is false.
    """
    if create and CUSTODIAN_SIGNING_SECRET not in keystore.read().secrets:
        with keystore.transaction() as contents:
            contents.secrets.setdefault(CUSTODIAN_SIGNING_SECRET, rng(signing.SEED_BYTES))
        logger.info("created the custodian identity key of %s", keystore.path)
    return custodian_fingerprint(signing.public_key_of(_signing_seed(keystore)))


def _signing_seed(keystore: Keystore) -> bytes:
    seed = keystore.read().secrets.get(CUSTODIAN_SIGNING_SECRET)
    if seed is None:
        raise UnknownKeyError(
            f"{keystore.path} has no custodian identity key yet: run `tessera-keys identity "
            "--create` once and read its fingerprint out to every organisation"
        )
    return seed


def _domain(contents_domains: dict[str, Domain], domain: str, keystore: Keystore) -> Domain:
    found = contents_domains.get(domain)
    if found is None:
        raise UnknownKeyError(f"no domain {domain} in {keystore.path}")
    return found


def rotate_domain(
    keystore: Keystore, domain: str, *, now: datetime | None = None, rng: Rng = os.urandom
) -> KeyVersion:
    """Add a new random key version to ``domain`` and make it current.

    The previous current version becomes ``active``; nothing is deleted.

    Raises:
        UnknownKeyError: no such domain.
    """
    with keystore.transaction() as contents:
        found = _domain(contents.domains, domain, keystore)
        new = new_key_version(found.next_version, status="current", now=now, rng=rng)
        kept = tuple(
            replace(v, status="active") if v.status == "current" else v for v in found.versions
        )
        contents.domains[domain] = Domain(name=domain, versions=(*kept, new))
    logger.info("rotated domain %s to %s (key id %s)", domain, new.version, new.key_id)
    return new


def retire_version(keystore: Keystore, domain: str, *, version: str) -> KeyVersion:
    """Destroy the key material of a non-current version; keep its id and fingerprint.

    Retiring a version already retired changes nothing.

    Raises:
        UnknownKeyError: no such domain or version.
        KeyManagementError: the version is current (rotate first).
    """
    with keystore.transaction() as contents:
        found = _domain(contents.domains, domain, keystore)
        target = found.version(version)
        if target.status == "current":
            raise KeyManagementError(
                f"domain {domain} {version} is current: rotate before retiring it"
            )
        retired = replace(target, status="retired", key=None)
        contents.domains[domain] = Domain(
            name=domain,
            versions=tuple(retired if v.version == version else v for v in found.versions),
        )
    logger.info("retired domain %s %s (key id %s)", domain, version, retired.key_id)
    return retired


def grant_key(
    keystore: Keystore,
    domain: str,
    recipient: OrgPublicKey,
    *,
    version: str | None = None,
    kem: Kem = Kem.HYBRID,
) -> Grant:
    """Wrap a version of ``domain`` (current by default) for one organisation, signed.

    Raises:
        UnknownKeyError: no such domain or version, the version is retired, or the keystore
            has no custodian identity key.
    """
    chosen = get_key_version(keystore, domain, version=version)
    seed = _signing_seed(keystore)
    blob = wrap_key(
        chosen.require_key(domain),
        domain=domain,
        version=chosen.version,
        key_id=chosen.key_id,
        recipient=recipient,
        signing_seed=seed,
        kem=kem,
    )
    logger.info(
        "granted domain %s %s (key id %s) to %s with %s",
        domain,
        chosen.version,
        chosen.key_id,
        recipient.org,
        kem.value,
    )
    return Grant(
        domain=domain,
        version=chosen.version,
        key_id=chosen.key_id,
        key_fingerprint=chosen.fingerprint,
        org=recipient.org,
        org_fingerprint=recipient.fingerprint,
        custodian_fingerprint=custodian_fingerprint(signing.public_key_of(seed)),
        kem=kem,
        blob=blob,
    )


def rewrap_domain(
    keystore: Keystore,
    domain: str,
    recipients: Iterable[OrgPublicKey],
    *,
    version: str | None = None,
    kem: Kem = Kem.HYBRID,
) -> list[Grant]:
    """Grant one version (current by default) to every organisation, e.g. after rotating.

    Raises:
        UnknownKeyError: no such domain or version, or the version is retired.
    """
    return [grant_key(keystore, domain, r, version=version, kem=kem) for r in recipients]
