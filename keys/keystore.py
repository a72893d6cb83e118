"""Encrypted keystores: the custodian's domain keys, the broker's secrets, an org's keys.

One file format serves all three (its *kind* is in the header); :mod:`keys.keystore_file`
defines it, seals it, locks it and writes it atomically. This module is the API over it:
:class:`Keystore` (open, create, read, change under a transaction, change the passphrase),
names and versions, domains, and the broker's own secrets. It re-exports the file module's
public names, so ``from keys.keystore import KeystoreKind`` keeps working.

Argon2id costs default to RFC 9106's second recommendation (64 MiB, 3 passes, 4 lanes).
They are stored in the header, so a keystore always reopens with its own costs. Only the
Python API lowers them (``kdf=`` on :meth:`Keystore.create`), which tests and golden
vectors use; no CLI flag or environment variable does, so a user cannot weaken a real
keystore by accident.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from keys.derive import DomainKey, fingerprint_key
from keys.errors import DuplicateKeyError, KeyManagementError, UnknownKeyError
from keys.keystore_file import (
    DEFAULT_KDF,
    DEFAULT_LOCK_TIMEOUT,
    DOMAIN_KEY_BYTES,
    FORMAT_VERSION,
    HEADER_BYTES,
    MAGIC,
    Domain,
    FileHeader,
    KdfParams,
    KeyStatus,
    KeystoreContents,
    KeystoreKind,
    KeyVersion,
    Rng,
    check_kind,
    derive_file_key,
    exclusive_lock,
    open_with_key,
    os_errors,
    parse_version,
    read_file,
    seal_contents,
    seal_new,
    seal_with_key,
    unseal_contents,
    write_atomic,
)

__all__ = [
    "DEFAULT_KDF",
    "DEFAULT_LOCK_TIMEOUT",
    "DOMAIN_KEY_BYTES",
    "FORMAT_VERSION",
    "HEADER_BYTES",
    "MAGIC",
    "MIN_PASSPHRASE_LENGTH",
    "SERVICE_SECRET_NAMES",
    "Domain",
    "KdfParams",
    "KeyStatus",
    "KeyVersion",
    "Keystore",
    "KeystoreContents",
    "KeystoreKind",
    "Rng",
    "ServiceSecrets",
    "check_name",
    "check_new_passphrase",
    "create_domain",
    "format_timestamp",
    "get_key_version",
    "list_domains",
    "new_key_version",
    "open_service_secrets",
    "parse_version",
    "seal_contents",
    "unseal_contents",
]

MIN_PASSPHRASE_LENGTH = 12

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

logger = logging.getLogger(__name__)


def check_name(name: str, *, what: str) -> str:
    """Return ``name`` if it is a valid domain, organisation or secret name, else raise.

    Names are 1–64 characters: letters, digits, ``.``, ``_`` and ``-``, starting with a
    letter or digit.
    """
    if not _NAME.fullmatch(name):
        raise KeyManagementError(
            f"invalid {what} name: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def check_new_passphrase(passphrase: str) -> str:
    """Return ``passphrase`` if it is long enough to protect a new keystore, else raise.

    The CLIs apply this when a keystore is created; the Python API accepts any non-empty
    passphrase (tests use short ones).
    """
    if len(passphrase) < MIN_PASSPHRASE_LENGTH:
        raise KeyManagementError(
            f"choose a passphrase of at least {MIN_PASSPHRASE_LENGTH} characters "
            "(four or more random words are best)"
        )
    return passphrase


def format_timestamp(moment: datetime | None = None) -> str:
    """``moment`` (now by default) as UTC ISO 8601 to the second, e.g. ``2026-01-01T09:00:00Z``."""
    moment = datetime.now(UTC) if moment is None else moment
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_key_version(
    label: str, *, status: KeyStatus, now: datetime | None = None, rng: Rng = os.urandom
) -> KeyVersion:
    """A fresh random 256-bit key version with a random opaque key id."""
    key = DomainKey(rng(DOMAIN_KEY_BYTES))
    return KeyVersion(
        version=label,
        key_id="kid-" + rng(8).hex(),
        fingerprint=fingerprint_key(key),
        status=status,
        created_at=format_timestamp(now),
        key=key,
    )


# --- the keystore -------------------------------------------------------------------


class Keystore:
    """An open keystore file.

    Reads need no lock (writes replace the file atomically). Changes go through
    :meth:`transaction`, which takes the exclusive lock, re-reads the file so no other
    writer's update is lost, and writes the result back atomically.

    The Argon2id-derived key is cached for the file's salt, so a transaction costs one
    AES-GCM operation rather than another key derivation.
    """

    __slots__ = ("_derived", "_kind", "_lock_timeout", "_passphrase", "_path", "_rng")

    def __init__(
        self,
        path: Path,
        passphrase: str,
        *,
        kind: KeystoreKind,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
        rng: Rng = os.urandom,
    ) -> None:
        self._path = path
        self._passphrase = passphrase
        self._kind = kind
        self._lock_timeout = lock_timeout
        self._rng = rng
        self._derived: tuple[bytes, KdfParams, bytes] | None = None

    def __repr__(self) -> str:
        return f"Keystore({str(self._path)!r}, kind={self._kind.label})"

    @property
    def path(self) -> Path:
        """The keystore file."""
        return self._path

    @property
    def kind(self) -> KeystoreKind:
        """What the keystore holds."""
        return self._kind

    @classmethod
    def create(
        cls,
        path: Path,
        passphrase: str,
        *,
        kind: KeystoreKind = KeystoreKind.CUSTODIAN,
        contents: KeystoreContents | None = None,
        kdf: KdfParams = DEFAULT_KDF,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
        rng: Rng = os.urandom,
    ) -> Keystore:
        """Create a new keystore file at ``path`` (its directory must exist).

        Args:
            path: the keystore file to create.
            passphrase: the passphrase it will open with (must not be empty).
            kind: what it holds.
            contents: initial contents (empty by default).
            kdf: Argon2id costs; lower them only in tests.
            lock_timeout: seconds to wait for another process's lock.
            rng: random source for salt, nonces, and keys made through this keystore.

        Raises:
            DuplicateKeyError: a keystore already exists at ``path``.
        """
        if not passphrase:
            raise KeyManagementError("the passphrase must not be empty")
        store = cls(path, passphrase, kind=kind, lock_timeout=lock_timeout, rng=rng)
        with exclusive_lock(path, lock_timeout):
            if path.exists():
                raise DuplicateKeyError(f"{path}: a keystore already exists there")
            data, key = seal_new(
                contents or KeystoreContents(), passphrase, kind=kind, kdf=kdf, rng=rng
            )
            store._derived = (data[24:40], kdf, key)
            with os_errors(path):
                write_atomic(path, data)
        logger.info("created %s keystore %s", kind.label, path)
        return store

    @classmethod
    def open(
        cls,
        path: Path,
        passphrase: str,
        *,
        kind: KeystoreKind = KeystoreKind.CUSTODIAN,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
        rng: Rng = os.urandom,
    ) -> Keystore:
        """Open the keystore at ``path``, checking the passphrase once.

        Raises:
            KeystoreFormatError: missing, not a keystore, truncated, or another kind.
            DecryptionError: wrong passphrase or altered file.
        """
        store = cls(path, passphrase, kind=kind, lock_timeout=lock_timeout, rng=rng)
        store.read()
        return store

    def _key_for(self, header: FileHeader) -> bytes:
        cached = self._derived
        if cached is not None and cached[0] == header.salt and cached[1] == header.kdf:
            return cached[2]
        key = derive_file_key(self._passphrase, header.salt, header.kdf)
        self._derived = (header.salt, header.kdf, key)
        return key

    def _load(self) -> tuple[KeystoreContents, FileHeader]:
        data = read_file(self._path)
        source = str(self._path)
        header = FileHeader.unpack(data, source=source)
        check_kind(header, self._kind, source)
        return open_with_key(data, self._key_for(header), header), header

    def change_passphrase(self, new_passphrase: str, *, kdf: KdfParams | None = None) -> None:
        """Re-encrypt the keystore under ``new_passphrase`` with a fresh salt.

        Args:
            new_passphrase: the passphrase from now on (must not be empty).
            kdf: new Argon2id costs; by default the file keeps its own.

        Raises:
            DecryptionError: the current passphrase does not open the file.
        """
        if not new_passphrase:
            raise KeyManagementError("the passphrase must not be empty")
        with exclusive_lock(self._path, self._lock_timeout):
            contents, header = self._load()
            costs = header.kdf if kdf is None else kdf
            data, key = seal_new(
                contents, new_passphrase, kind=self._kind, kdf=costs, rng=self._rng
            )
            with os_errors(self._path):
                write_atomic(self._path, data)
        self._passphrase = new_passphrase
        self._derived = (data[24:40], costs, key)
        logger.info("changed the passphrase of %s keystore %s", self._kind.label, self._path)

    def read(self) -> KeystoreContents:
        """A snapshot of the contents (changes to it are not saved)."""
        return self._load()[0]

    @contextmanager
    def transaction(self) -> Iterator[KeystoreContents]:
        """Lock, re-read, let the caller change the contents, write them back atomically.

        Nothing is written if the block raises.

        Raises:
            KeystoreBusyError: another process held the lock for longer than the timeout.
        """
        with exclusive_lock(self._path, self._lock_timeout):
            contents, header = self._load()
            yield contents
            data = seal_with_key(contents, self._key_for(header), header, self._rng)
            with os_errors(self._path):
                write_atomic(self._path, data)
        logger.debug("wrote %s keystore %s", self._kind.label, self._path)


# --- domains ----------------------------------------------------------------------------


def create_domain(
    keystore: Keystore, domain: str, *, now: datetime | None = None, rng: Rng = os.urandom
) -> KeyVersion:
    """Create linkage domain ``domain`` with a random key version ``v1`` (current).

    Raises:
        DuplicateKeyError: the domain exists already.
    """
    check_name(domain, what="domain")
    with keystore.transaction() as contents:
        if domain in contents.domains:
            raise DuplicateKeyError(f"domain {domain} already exists")
        first = new_key_version("v1", status="current", now=now, rng=rng)
        contents.domains[domain] = Domain(name=domain, versions=(first,))
    logger.info("created domain %s v1 (key id %s)", domain, first.key_id)
    return first


def list_domains(keystore: Keystore) -> list[Domain]:
    """Every domain in the keystore, by name."""
    contents = keystore.read()
    return [contents.domains[name] for name in sorted(contents.domains)]


def get_key_version(keystore: Keystore, domain: str, *, version: str | None = None) -> KeyVersion:
    """Key version ``version`` of ``domain`` (the current one for ``None``).

    Raises:
        UnknownKeyError: no such domain or version.
    """
    contents = keystore.read()
    found = contents.domains.get(domain)
    if found is None:
        raise UnknownKeyError(f"no domain {domain} in {keystore.path}")
    return found.version(version)


# --- the broker's own secrets -----------------------------------------------------------

SERVICE_SECRET_NAMES = ("audit_signing_key", "credential", "pseudonym_master", "rekey")


@dataclass(frozen=True, slots=True)
class ServiceSecrets:
    """The broker's own secrets, each 32 random bytes (never shown by ``repr``).

    Attributes:
        rekey: re-keys tokens at rest (:class:`keys.derive.AtRestKeyer`).
        pseudonym_master: master of per-agreement pseudonym keys
            (:func:`keys.derive.derive_pseudonym`).
        credential: keys credential digests (:func:`keys.derive.digest_credential`).
        audit_signing_key: Ed25519 private seed of the audit log (:mod:`keys.signing`).
    """

    rekey: bytes = field(repr=False)
    pseudonym_master: bytes = field(repr=False)
    credential: bytes = field(repr=False)
    audit_signing_key: bytes = field(repr=False)


def open_service_secrets(
    path: Path,
    passphrase: str,
    *,
    kdf: KdfParams = DEFAULT_KDF,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    rng: Rng = os.urandom,
) -> ServiceSecrets:
    """Open the broker's keystore at ``path``, creating it with fresh secrets if absent.

    Safe when several broker processes start at once: creation and any missing secret are
    added under the keystore lock, so all of them end up with the same secrets.

    Args:
        path: the service keystore file.
        passphrase: its passphrase.
        kdf: Argon2id costs for a newly created file; lower them only in tests.
        lock_timeout: seconds to wait for another process's lock.
        rng: random source.

    Raises:
        DecryptionError: wrong passphrase or altered file.
        KeystoreFormatError: not a service keystore, or truncated.
    """
    kind = KeystoreKind.SERVICE
    try:
        store = Keystore.create(
            path, passphrase, kind=kind, kdf=kdf, lock_timeout=lock_timeout, rng=rng
        )
    except DuplicateKeyError:
        store = Keystore.open(path, passphrase, kind=kind, lock_timeout=lock_timeout, rng=rng)
    contents = store.read()
    if any(name not in contents.secrets for name in SERVICE_SECRET_NAMES):
        with store.transaction() as contents:
            for name in SERVICE_SECRET_NAMES:
                contents.secrets.setdefault(name, rng(32))
    return ServiceSecrets(**{name: contents.secrets[name] for name in SERVICE_SECRET_NAMES})
