"""The keystore file: its format, its sealing, its lock and its atomic writes.

:mod:`keys.keystore` builds the ``Keystore`` API and the broker's service secrets on
this module and re-exports its public names, so importers keep using ``keys.keystore``.

One file format serves all three (its *kind* is in the header). The file is encrypted at rest
under a key derived from a passphrase with Argon2id, sealed with AES-256-GCM, written
atomically (temporary file, fsync, rename, fsync of the directory) with mode 0600, and every
change happens under an exclusive lock so two processes never corrupt it or lose an update.

The lock is :mod:`filelock`'s (``fcntl.flock`` on POSIX, ``msvcrt.locking`` on Windows), so
nothing here needs a POSIX-only module. Windows cannot express the modes 0600 and 0700 used
here: on Windows the file takes its folder's access control list instead, which is one
reason the keystore is encrypted whatever its mode (keep it in a folder only its owner or
service account can read).

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

A lock file ``PATH.lock`` (mode 0600) sits beside the keystore. :mod:`filelock` owns its
life: on POSIX it stays after release, on Windows it is removed, and either way a waiter
that opened a file another process just removed notices and retries, so two writers are
never let in.

Argon2id costs default to RFC 9106's second recommendation (64 MiB, 3 passes, 4 lanes).
They are stored in the header, so a keystore always reopens with its own costs. Only the
Python API lowers them (``kdf=`` on ``Keystore.create``), which tests and golden
vectors use; no CLI flag or environment variable does, so a user cannot weaken a real
keystore by accident.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Any, Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
from filelock import FileLock, Timeout

from keys.derive import DomainKey
from keys.errors import (
    DecryptionError,
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
    "Domain",
    "FileHeader",
    "KdfParams",
    "KeyStatus",
    "KeyVersion",
    "KeystoreContents",
    "KeystoreKind",
    "Rng",
    "check_kind",
    "derive_file_key",
    "exclusive_lock",
    "open_with_key",
    "os_errors",
    "parse_version",
    "read_file",
    "seal_contents",
    "seal_new",
    "seal_with_key",
    "unseal_contents",
    "write_atomic",
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

_KDF_ARGON2ID = 1
_SALT_BYTES = 16
_NONCE_BYTES = 12
_TAG_BYTES = 16
_HEADER = struct.Struct(">8sBBBBIII16s12s")
_VERSION = re.compile(r"v([1-9][0-9]{0,5})")
# Bounds on costs read from a header, so a crafted file cannot ask for absurd memory.
_MAX_MEMORY_KIB = 4 * 1024 * 1024
_MAX_ITERATIONS = 64
_MAX_LANES = 64


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


def parse_version(label: str) -> int:
    """The number of a version label (``"v3"`` → 3); :class:`UnknownKeyError` if malformed."""
    match = _VERSION.fullmatch(label)
    if match is None:
        raise UnknownKeyError("a key version looks like v1, v2, …")
    return int(match.group(1))


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
class FileHeader:
    """The clear, authenticated 52-byte header of a keystore file."""

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
    def unpack(cls, data: bytes, *, source: str) -> FileHeader:
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


def derive_file_key(passphrase: str, salt: bytes, kdf: KdfParams) -> bytes:
    return Argon2id(
        salt=salt,
        length=32,
        iterations=kdf.iterations,
        lanes=kdf.lanes,
        memory_cost=kdf.memory_cost,
    ).derive(passphrase.encode())


def seal_with_key(contents: KeystoreContents, key: bytes, header: FileHeader, rng: Rng) -> bytes:
    header = replace(header, nonce=rng(_NONCE_BYTES))
    packed = header.pack()
    return packed + AESGCM(key).encrypt(header.nonce, _encode_payload(contents), packed)


def open_with_key(data: bytes, key: bytes, header: FileHeader) -> KeystoreContents:
    try:
        raw = AESGCM(key).decrypt(header.nonce, data[HEADER_BYTES:], data[:HEADER_BYTES])
    except InvalidTag:
        raise DecryptionError("keystore") from None
    return _decode_payload(raw)


def check_kind(header: FileHeader, kind: KeystoreKind, source: str) -> None:
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
    return seal_new(contents, passphrase, kind=kind, kdf=kdf, rng=rng)[0]


def seal_new(
    contents: KeystoreContents, passphrase: str, *, kind: KeystoreKind, kdf: KdfParams, rng: Rng
) -> tuple[bytes, bytes]:
    """File bytes under a fresh salt, and the derived key (so it need not be derived again)."""
    kdf.check()
    salt = rng(_SALT_BYTES)
    key = derive_file_key(passphrase, salt, kdf)
    header = FileHeader(kind=kind, kdf=kdf, salt=salt, nonce=b"\0" * _NONCE_BYTES)
    return seal_with_key(contents, key, header, rng), key


def unseal_contents(
    data: bytes, passphrase: str, *, kind: KeystoreKind, source: str = "keystore"
) -> KeystoreContents:
    """Decrypt keystore file bytes.

    Raises:
        KeystoreFormatError: not a keystore, truncated, unknown version or another kind.
        DecryptionError: wrong passphrase or altered file (never says which).
    """
    header = FileHeader.unpack(data, source=source)
    check_kind(header, kind, source)
    return open_with_key(data, derive_file_key(passphrase, header.salt, header.kdf), header)


# --- files and locks ------------------------------------------------------------------


@contextmanager
def exclusive_lock(path: Path, timeout: float) -> Iterator[None]:
    """Hold the exclusive lock of keystore ``path`` (its ``PATH.lock`` file).

    Raises:
        KeystoreBusyError: another process held it for longer than ``timeout`` seconds.
    """
    lock_path = path.with_name(path.name + ".lock")
    if not path.parent.is_dir():  # filelock would create the missing folders
        raise KeyManagementError(f"{lock_path}: cannot use the keystore file: no such directory")
    lock = FileLock(lock_path, timeout=timeout, mode=0o600)
    with os_errors(lock_path):
        try:
            lock.acquire(poll_interval=0.02)
        except Timeout:  # an OSError: handled before os_errors would see it
            raise KeystoreBusyError(
                f"{path}: another process is using the keystore "
                f"(waited {timeout:g}s for {lock_path})"
            ) from None
    try:
        yield
    finally:
        lock.release()


@contextmanager
def os_errors(path: Path) -> Iterator[None]:
    """An operating-system failure (missing directory, permissions) as one clear line."""
    try:
        yield
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise KeyManagementError(f"{path}: cannot use the keystore file: {reason}") from exc


def _fsync_directory(directory: Path) -> None:
    """Make a rename durable. Windows cannot open a directory for fsync (nor needs to)."""
    if os.name == "nt":
        return
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` all at once: temporary file, fsync, rename, fsync."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0), 0o600)
    try:
        try:
            os.chmod(tmp, 0o600)
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
    _fsync_directory(path.parent)


def read_file(path: Path) -> bytes:
    """The bytes of keystore ``path``, or one clear line saying why not."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise KeystoreFormatError(f"{path}: no keystore there") from None
    except IsADirectoryError:
        raise KeystoreFormatError(f"{path}: is a directory, not a keystore") from None
    except OSError as exc:
        raise KeyManagementError(f"{path}: cannot read the keystore: {exc.strerror}") from None
