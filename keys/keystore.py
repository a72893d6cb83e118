"""Encrypted keystores: the custodian's domain keys, the broker's secrets, an org's keys.

One file format serves all three (its *kind* is in the header). The file is encrypted at rest
under a key derived from a passphrase with Argon2id, sealed with AES-256-GCM, written
atomically (temporary file, fsync, rename, fsync of the directory) with mode 0600, and every
change happens under an exclusive lock so two processes never corrupt it or lose an update.

File format, version 1 (all integers big-endian)::

    offset  size  field
    0       8     magic b"TESSERAK"
    8       1     format version (1)
    9       1     kind: 1 custodian, 2 service (the broker's secrets), 3 organisation
    10      1     KDF: 1 Argon2id
    11      1     reserved (0)
    12      4     Argon2id memory cost in KiB
    16      4     Argon2id iterations
    20      4     Argon2id lanes
    24      16    salt
    40      12    AES-GCM nonce (fresh on every write)
    52      …     AES-256-GCM ciphertext and 16-byte tag of the payload; the 52 header
                  bytes are the associated data, so no header field can be altered unseen

The payload is UTF-8 JSON with sorted keys and no spaces::

    {"domains": {NAME: {"versions": [{"created_at": "2026-01-01T00:00:00Z",
                                      "fingerprint": "K7QF-2MZD-PA4C", "key": BASE64 | null,
                                      "key_id": "kid-…", "status": "current",
                                      "version": "v1"}, …]}},
     "meta": {NAME: TEXT},
     "secrets": {NAME: BASE64}}

A lock file ``PATH.lock`` (mode 0600) sits beside the keystore; it is never deleted, since
deleting a lock file while another process waits on it would let two writers in.

Argon2id costs default to RFC 9106's second recommendation (64 MiB, 3 passes, 4 lanes).
They are stored in the header, so a keystore always reopens with its own costs. Only the
Python API lowers them (``kdf=`` on :meth:`Keystore.create`), which tests and golden
vectors use; no CLI flag or environment variable does, so a user cannot weaken a real
keystore by accident.
"""

from __future__ import annotations

import base64
import binascii
import errno
import fcntl
import json
import logging
import os
import re
import struct
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Any, Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

from keys.derive import DomainKey, fingerprint_key
from keys.errors import (
    DecryptionError,
    DuplicateKeyError,
    KeyManagementError,
    KeystoreBusyError,
    KeystoreFormatError,
    UnknownKeyError,
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

Rng = Callable[[int], bytes]
"""A source of random bytes: ``rng(n)`` returns ``n`` bytes. ``os.urandom`` by default."""

KeyStatus = Literal["current", "active", "retired"]
"""``current``: the version new grants and tokens use; ``active``: an older version still
held; ``retired``: its key material is destroyed, only its id and fingerprint remain."""

MAGIC = b"TESSERAK"
FORMAT_VERSION = 1
HEADER_BYTES = 52
DOMAIN_KEY_BYTES = 32
DEFAULT_LOCK_TIMEOUT = 10.0
MIN_PASSPHRASE_LENGTH = 12

_KDF_ARGON2ID = 1
_SALT_BYTES = 16
_NONCE_BYTES = 12
_TAG_BYTES = 16
_HEADER = struct.Struct(">8sBBBBIII16s12s")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_VERSION = re.compile(r"v([1-9][0-9]{0,5})")
# Bounds on costs read from a header, so a crafted file cannot ask for absurd memory.
_MAX_MEMORY_KIB = 4 * 1024 * 1024
_MAX_ITERATIONS = 64
_MAX_LANES = 64

logger = logging.getLogger(__name__)


class KeystoreKind(Enum):
    """What a keystore holds; stored in (and authenticated with) the header."""

    CUSTODIAN = 1
    SERVICE = 2
    ORG = 3

    @property
    def label(self) -> str:
        """Lower-case name for messages."""
        return {1: "custodian", 2: "service", 3: "organisation"}[self.value]


@dataclass(frozen=True, slots=True)
class KdfParams:
    """Argon2id costs: memory in KiB, passes, lanes."""

    memory_cost: int = 64 * 1024
    iterations: int = 3
    lanes: int = 4

    def check(self) -> None:
        """Raise :class:`KeystoreFormatError` if the costs are out of the accepted range."""
        if not (
            1 <= self.lanes <= _MAX_LANES
            and 1 <= self.iterations <= _MAX_ITERATIONS
            and 8 * self.lanes <= self.memory_cost <= _MAX_MEMORY_KIB
        ):
            raise KeystoreFormatError("keystore header has out-of-range Argon2id costs")


DEFAULT_KDF = KdfParams()


@dataclass(frozen=True, slots=True)
class KeyVersion:
    """One version of a domain key.

    ``key`` is ``None`` once the version is retired. It is left out of ``repr`` so the
    object can be logged.
    """

    version: str
    key_id: str
    fingerprint: str
    status: KeyStatus
    created_at: str
    key: DomainKey | None = field(default=None, repr=False)

    def require_key(self, domain: str) -> DomainKey:
        """The key bytes, or :class:`UnknownKeyError` if this version is retired."""
        if self.key is None:
            raise UnknownKeyError(f"domain {domain} {self.version} is retired: no key material")
        return self.key


@dataclass(frozen=True, slots=True)
class Domain:
    """A linkage domain and its key versions, oldest first."""

    name: str
    versions: tuple[KeyVersion, ...]

    @property
    def current(self) -> KeyVersion:
        """The current version (newest held if none is marked current)."""
        for v in self.versions:
            if v.status == "current":
                return v
        held = [v for v in self.versions if v.key is not None]
        if not held:
            raise UnknownKeyError(f"domain {self.name} has no usable key version")
        return held[-1]

    def version(self, label: str | None = None) -> KeyVersion:
        """Version ``label`` (e.g. ``"v2"``), or the current one for ``None``."""
        if label is None:
            return self.current
        for v in self.versions:
            if v.version == label:
                return v
        raise UnknownKeyError(f"domain {self.name} has no key version {label}")

    @property
    def next_version(self) -> str:
        """Label of the version a rotation would create."""
        highest = max((parse_version(v.version) for v in self.versions), default=0)
        return f"v{highest + 1}"


@dataclass(slots=True)
class KeystoreContents:
    """The decrypted payload of a keystore; change it only inside a transaction."""

    domains: dict[str, Domain] = field(default_factory=dict)
    secrets: dict[str, bytes] = field(default_factory=dict, repr=False)
    meta: dict[str, str] = field(default_factory=dict)


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


def parse_version(label: str) -> int:
    """The number of a version label (``"v3"`` → 3); :class:`UnknownKeyError` if malformed."""
    match = _VERSION.fullmatch(label)
    if match is None:
        raise UnknownKeyError("a key version looks like v1, v2, …")
    return int(match.group(1))


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


# --- payload encoding -----------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: object) -> bytes:
    if not isinstance(text, str):
        raise KeystoreFormatError("keystore payload is malformed")
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error as exc:
        raise KeystoreFormatError("keystore payload is malformed") from exc


def _encode_payload(contents: KeystoreContents) -> bytes:
    doc: dict[str, Any] = {
        "domains": {
            name: {
                "versions": [
                    {
                        "created_at": v.created_at,
                        "fingerprint": v.fingerprint,
                        "key": None if v.key is None else _b64(v.key),
                        "key_id": v.key_id,
                        "status": v.status,
                        "version": v.version,
                    }
                    for v in domain.versions
                ]
            }
            for name, domain in contents.domains.items()
        },
        "meta": dict(contents.meta),
        "secrets": {name: _b64(value) for name, value in contents.secrets.items()},
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def _decode_payload(raw: bytes) -> KeystoreContents:
    try:
        doc = json.loads(raw)
        domains: dict[str, Domain] = {}
        for name, entry in doc["domains"].items():
            versions = []
            for v in entry["versions"]:
                status = v["status"]
                if status not in ("current", "active", "retired"):
                    raise KeystoreFormatError("keystore payload is malformed")
                key = None if v["key"] is None else DomainKey(_unb64(v["key"]))
                versions.append(
                    KeyVersion(
                        version=str(v["version"]),
                        key_id=str(v["key_id"]),
                        fingerprint=str(v["fingerprint"]),
                        status=status,
                        created_at=str(v["created_at"]),
                        key=key,
                    )
                )
            domains[str(name)] = Domain(name=str(name), versions=tuple(versions))
        secrets = {str(k): _unb64(v) for k, v in doc["secrets"].items()}
        meta = {str(k): str(v) for k, v in doc["meta"].items()}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise KeystoreFormatError("keystore payload is malformed") from exc
    return KeystoreContents(domains=domains, secrets=secrets, meta=meta)


# --- sealing ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Header:
    kind: KeystoreKind
    kdf: KdfParams
    salt: bytes
    nonce: bytes

    def pack(self) -> bytes:
        return _HEADER.pack(
            MAGIC,
            FORMAT_VERSION,
            self.kind.value,
            _KDF_ARGON2ID,
            0,
            self.kdf.memory_cost,
            self.kdf.iterations,
            self.kdf.lanes,
            self.salt,
            self.nonce,
        )

    @classmethod
    def unpack(cls, data: bytes, *, source: str) -> _Header:
        if len(data) < HEADER_BYTES + _TAG_BYTES:
            if data[: len(MAGIC)] != MAGIC[: len(data)]:
                raise KeystoreFormatError(f"{source}: not a Tessera keystore")
            raise KeystoreFormatError(f"{source}: truncated keystore")
        magic, version, kind, kdf_id, reserved, memory, iterations, lanes, salt, nonce = (
            _HEADER.unpack_from(data)
        )
        if magic != MAGIC:
            raise KeystoreFormatError(f"{source}: not a Tessera keystore")
        if version != FORMAT_VERSION:
            raise KeystoreFormatError(
                f"{source}: keystore format version {version} is not supported"
            )
        if kdf_id != _KDF_ARGON2ID or reserved != 0 or kind not in (1, 2, 3):
            raise KeystoreFormatError(f"{source}: keystore header is malformed")
        kdf = KdfParams(memory_cost=memory, iterations=iterations, lanes=lanes)
        kdf.check()
        return cls(kind=KeystoreKind(kind), kdf=kdf, salt=salt, nonce=nonce)


def _derive_key(passphrase: str, salt: bytes, kdf: KdfParams) -> bytes:
    return Argon2id(
        salt=salt,
        length=32,
        iterations=kdf.iterations,
        lanes=kdf.lanes,
        memory_cost=kdf.memory_cost,
    ).derive(passphrase.encode())


def _seal_with_key(contents: KeystoreContents, key: bytes, header: _Header, rng: Rng) -> bytes:
    header = replace(header, nonce=rng(_NONCE_BYTES))
    packed = header.pack()
    return packed + AESGCM(key).encrypt(header.nonce, _encode_payload(contents), packed)


def _open_with_key(data: bytes, key: bytes, header: _Header) -> KeystoreContents:
    try:
        raw = AESGCM(key).decrypt(header.nonce, data[HEADER_BYTES:], data[:HEADER_BYTES])
    except InvalidTag:
        raise DecryptionError("keystore") from None
    return _decode_payload(raw)


def _check_kind(header: _Header, kind: KeystoreKind, source: str) -> None:
    if header.kind is not kind:
        raise KeystoreFormatError(
            f"{source}: this is a {header.kind.label} keystore, not a {kind.label} keystore"
        )


def seal_contents(
    contents: KeystoreContents,
    passphrase: str,
    *,
    kind: KeystoreKind,
    kdf: KdfParams = DEFAULT_KDF,
    rng: Rng = os.urandom,
) -> bytes:
    """Encrypt ``contents`` into keystore file bytes with a fresh salt and nonce.

    Deterministic given ``rng`` (16 bytes of salt are drawn, then 12 of nonce), which the
    golden vectors use.
    """
    return _seal_new(contents, passphrase, kind=kind, kdf=kdf, rng=rng)[0]


def _seal_new(
    contents: KeystoreContents, passphrase: str, *, kind: KeystoreKind, kdf: KdfParams, rng: Rng
) -> tuple[bytes, bytes]:
    """File bytes under a fresh salt, and the derived key (so it need not be derived again)."""
    kdf.check()
    salt = rng(_SALT_BYTES)
    key = _derive_key(passphrase, salt, kdf)
    header = _Header(kind=kind, kdf=kdf, salt=salt, nonce=b"\0" * _NONCE_BYTES)
    return _seal_with_key(contents, key, header, rng), key


def unseal_contents(
    data: bytes, passphrase: str, *, kind: KeystoreKind, source: str = "keystore"
) -> KeystoreContents:
    """Decrypt keystore file bytes.

    Raises:
        KeystoreFormatError: not a keystore, truncated, unknown version or another kind.
        DecryptionError: wrong passphrase or altered file (never says which).
    """
    header = _Header.unpack(data, source=source)
    _check_kind(header, kind, source)
    return _open_with_key(data, _derive_key(passphrase, header.salt, header.kdf), header)


# --- files, locks, transactions ---------------------------------------------------------


def _lock_path(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


@contextmanager
def _exclusive_lock(path: Path, timeout: float) -> Iterator[None]:
    lock_path = _lock_path(path)
    with _os_errors(lock_path):
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise
                if time.monotonic() >= deadline:
                    raise KeystoreBusyError(
                        f"{path}: another process is using the keystore "
                        f"(waited {timeout:g}s for {lock_path})"
                    ) from None
                time.sleep(0.02)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextmanager
def _os_errors(path: Path) -> Iterator[None]:
    """An operating-system failure (missing directory, permissions) as one clear line."""
    try:
        yield
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise KeyManagementError(f"{path}: cannot use the keystore file: {reason}") from exc


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        try:
            os.fchmod(fd, 0o600)
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise KeystoreFormatError(f"{path}: no keystore there") from None
    except IsADirectoryError:
        raise KeystoreFormatError(f"{path}: is a directory, not a keystore") from None
    except OSError as exc:
        raise KeyManagementError(f"{path}: cannot read the keystore: {exc.strerror}") from None


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
        with _exclusive_lock(path, lock_timeout):
            if path.exists():
                raise DuplicateKeyError(f"{path}: a keystore already exists there")
            data, key = _seal_new(
                contents or KeystoreContents(), passphrase, kind=kind, kdf=kdf, rng=rng
            )
            store._derived = (data[24:40], kdf, key)
            with _os_errors(path):
                _write_atomic(path, data)
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

    def _key_for(self, header: _Header) -> bytes:
        cached = self._derived
        if cached is not None and cached[0] == header.salt and cached[1] == header.kdf:
            return cached[2]
        key = _derive_key(self._passphrase, header.salt, header.kdf)
        self._derived = (header.salt, header.kdf, key)
        return key

    def _load(self) -> tuple[KeystoreContents, _Header]:
        data = _read_file(self._path)
        source = str(self._path)
        header = _Header.unpack(data, source=source)
        _check_kind(header, self._kind, source)
        return _open_with_key(data, self._key_for(header), header), header

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
        with _exclusive_lock(self._path, self._lock_timeout):
            contents, header = self._load()
            costs = header.kdf if kdf is None else kdf
            data, key = _seal_new(
                contents, new_passphrase, kind=self._kind, kdf=costs, rng=self._rng
            )
            with _os_errors(self._path):
                _write_atomic(self._path, data)
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
        with _exclusive_lock(self._path, self._lock_timeout):
            contents, header = self._load()
            yield contents
            data = _seal_with_key(contents, self._key_for(header), header, self._rng)
            with _os_errors(self._path):
                _write_atomic(self._path, data)
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
