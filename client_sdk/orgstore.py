"""An organisation's identity and local encrypted keystore (its ``ORGDIR``).

``tessera-sdk init`` makes the directory::

    ORGDIR/                      mode 0700
      org.keystore               encrypted (keys/keystore.py format, kind "organisation"):
                                 the private keys, the reference secret, installed
                                 domain keys
      org.keystore.lock          the keystore's lock file
      public-key.json            the public keys, for the custodian (keys/wrapping.py)

The keystore's passphrase comes from ``TESSERA_SDK_PASSPHRASE`` or a prompt.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from client_sdk.errors import OrgStoreError
from keys.derive import DomainKey
from keys.errors import DuplicateKeyError, KeystoreFormatError
from keys.keystore import (
    DEFAULT_KDF,
    DEFAULT_LOCK_TIMEOUT,
    Domain,
    KdfParams,
    Keystore,
    KeystoreContents,
    KeystoreKind,
    KeyVersion,
    Rng,
    check_name,
    format_timestamp,
    parse_version,
)
from keys.wrapping import OrgPrivateKeys, OrgPublicKey, unwrap_key

__all__ = [
    "KEYSTORE_FILE",
    "PUBLIC_KEY_FILE",
    "InstalledKey",
    "OrgStore",
    "public_key_fingerprint",
]

KEYSTORE_FILE = "org.keystore"
PUBLIC_KEY_FILE = "public-key.json"
_REFERENCE_SECRET = "reference"
_ORG_META = "org"

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class InstalledKey:
    """A domain key version installed in an organisation's keystore (no key bytes)."""

    domain: str
    version: str
    key_id: str
    fingerprint: str
    installed_at: str


def public_key_fingerprint(public_key_file_bytes: bytes) -> str:
    """The short fingerprint of a public key file, to read out over the phone.

    Raises:
        KeystoreFormatError: not a valid public key file.
    """
    return OrgPublicKey.from_file_bytes(public_key_file_bytes).fingerprint


def _installed(version: KeyVersion, domain: str) -> InstalledKey:
    return InstalledKey(
        domain=domain,
        version=version.version,
        key_id=version.key_id,
        fingerprint=version.fingerprint,
        installed_at=version.created_at,
    )


class OrgStore:
    """An organisation directory, open with its passphrase."""

    __slots__ = ("_directory", "_keystore", "_org")

    def __init__(self, directory: Path, keystore: Keystore, *, org: str) -> None:
        self._directory = directory
        self._keystore = keystore
        self._org = org

    def __repr__(self) -> str:
        return f"OrgStore({str(self._directory)!r}, org={self._org!r})"

    @classmethod
    def create(
        cls,
        directory: Path,
        org: str,
        passphrase: str,
        *,
        kdf: KdfParams = DEFAULT_KDF,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
        rng: Rng = os.urandom,
    ) -> OrgStore:
        """Initialise ``directory`` as organisation ``org``'s identity.

        Makes X25519 and ML-KEM-768+X25519 key pairs and a 32-byte reference secret,
        keeps them in the encrypted keystore and writes the public key file.

        Args:
            directory: the organisation directory (created, mode 0700, if absent).
            org: organisation name (letters, digits, ``.``, ``_``, ``-``).
            passphrase: the keystore's passphrase.
            kdf: Argon2id costs; lower them only in tests.
            lock_timeout: seconds to wait for another process's lock.
            rng: random source.

        Raises:
            OrgStoreError: the directory is already initialised.
        """
        check_name(org, what="organisation")
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise OrgStoreError(
                f"{directory}: cannot create the directory: {exc.strerror}"
            ) from None
        private = OrgPrivateKeys.generate(rng=rng)
        contents = KeystoreContents(
            secrets={**private.to_secrets(), _REFERENCE_SECRET: rng(32)},
            meta={_ORG_META: org},
        )
        try:
            keystore = Keystore.create(
                directory / KEYSTORE_FILE,
                passphrase,
                kind=KeystoreKind.ORG,
                contents=contents,
                kdf=kdf,
                lock_timeout=lock_timeout,
                rng=rng,
            )
        except DuplicateKeyError:
            raise OrgStoreError(f"{directory}: already initialised as an organisation") from None
        tmp = directory / f".{PUBLIC_KEY_FILE}.tmp"
        tmp.write_bytes(private.public(org).to_file_bytes())
        tmp.replace(directory / PUBLIC_KEY_FILE)
        return cls(directory, keystore, org=org)

    @classmethod
    def open(
        cls,
        directory: Path,
        passphrase: str,
        *,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    ) -> OrgStore:
        """Open an initialised organisation directory.

        Raises:
            OrgStoreError: the directory does not exist or is not initialised.
            keys.errors.DecryptionError: wrong passphrase or altered keystore.
        """
        path = directory / KEYSTORE_FILE
        if not path.is_file():
            raise OrgStoreError(
                f"{directory}: not an organisation directory (run `tessera-sdk init` first)"
            )
        keystore = Keystore.open(path, passphrase, kind=KeystoreKind.ORG, lock_timeout=lock_timeout)
        org = keystore.read().meta.get(_ORG_META)
        if org is None:
            raise KeystoreFormatError(f"{path}: organisation keystore lacks its name")
        return cls(directory, keystore, org=org)

    @property
    def org(self) -> str:
        """The organisation's name."""
        return self._org

    @property
    def directory(self) -> Path:
        """The organisation directory."""
        return self._directory

    @property
    def public_key_path(self) -> Path:
        """The public key file to send to the custodian."""
        return self._directory / PUBLIC_KEY_FILE

    @property
    def fingerprint(self) -> str:
        """Fingerprint of this organisation's public keys (as ``init`` printed it)."""
        return self._private_keys(self._keystore.read()).public(self._org).fingerprint

    @staticmethod
    def _private_keys(contents: KeystoreContents) -> OrgPrivateKeys:
        return OrgPrivateKeys.from_secrets(contents.secrets)

    def reference_secret(self) -> bytes:
        """The org-local 32-byte secret under which record references are derived."""
        secret = self._keystore.read().secrets.get(_REFERENCE_SECRET)
        if secret is None:
            raise KeystoreFormatError(f"{self._keystore.path}: no reference secret")
        return secret

    def domain_key(self, domain: str, version: str | None = None) -> tuple[DomainKey, str]:
        """An installed domain key and its version label.

        Args:
            domain: linkage domain name.
            version: e.g. ``"v2"``; ``None`` for the newest installed version.

        Raises:
            OrgStoreError: that domain or version is not installed.
        """
        found = self._keystore.read().domains.get(domain)
        if found is None or not found.versions:
            raise OrgStoreError(
                f"no key for domain {domain} is installed in {self._directory} "
                "(ask the custodian for a grant, then run `tessera-sdk install-key`)"
            )
        if version is None:
            chosen = max(found.versions, key=lambda v: parse_version(v.version))
        else:
            matches = [v for v in found.versions if v.version == version]
            if not matches:
                raise OrgStoreError(
                    f"domain {domain} {version} is not installed in {self._directory}"
                )
            chosen = matches[0]
        if chosen.key is None:
            raise OrgStoreError(f"domain {domain} {chosen.version} has no key material")
        return chosen.key, chosen.version

    def install_blob(self, blob: bytes, *, source: str = "key blob") -> InstalledKey:
        """Unwrap a blob granted to this organisation and keep the key.

        Installing the same key version again changes nothing.

        Raises:
            keys.errors.DecryptionError: a blob for another organisation, domain or version,
                or an altered one (one opaque message).
            keys.errors.KeystoreFormatError: not a blob, or truncated.
            keys.errors.DuplicateKeyError: another key is installed under that version.
        """
        with self._keystore.transaction() as contents:
            opened = unwrap_key(
                blob, org=self._org, private_keys=self._private_keys(contents), source=source
            )
            check_name(opened.domain, what="domain")
            parse_version(opened.version)
            existing = contents.domains.get(opened.domain)
            versions = existing.versions if existing is not None else ()
            for held in versions:
                if held.version == opened.version:
                    if held.key_id != opened.key_id or held.key != opened.key:
                        raise DuplicateKeyError(
                            f"domain {opened.domain} {opened.version} is already installed "
                            f"with another key (key id {held.key_id})"
                        )
                    return _installed(held, opened.domain)
            new = KeyVersion(
                version=opened.version,
                key_id=opened.key_id,
                fingerprint=opened.fingerprint,
                status="active",
                created_at=format_timestamp(),
                key=opened.key,
            )
            ordered = sorted((*versions, new), key=lambda v: parse_version(v.version))
            contents.domains[opened.domain] = Domain(name=opened.domain, versions=tuple(ordered))
        logger.info(
            "installed domain %s %s (key id %s) for %s",
            opened.domain,
            opened.version,
            opened.key_id,
            self._org,
        )
        return _installed(new, opened.domain)

    def installed(self) -> list[InstalledKey]:
        """Every installed domain key version, by domain then version."""
        contents = self._keystore.read()
        return [
            _installed(v, name)
            for name in sorted(contents.domains)
            for v in sorted(contents.domains[name].versions, key=lambda v: parse_version(v.version))
        ]
