"""An organisation's identity and local encrypted keystore (its ``ORGDIR``).

``tessera-sdk init`` makes the directory::

    ORGDIR/                      mode 0700
      org.keystore               encrypted (keys/keystore.py format, kind "organisation"):
                                 the private keys, the reference secret, installed
                                 domain keys
      org.keystore.lock          the keystore's lock file
      public-key.json            the public keys, for the custodian (keys/wrapping.py)

The keystore's passphrase comes from ``TESSERA_SDK_PASSPHRASE`` or a prompt. Windows
cannot express the modes 0700 and 0600: there the directory and keystore take their
parent folder's access control list, and the keystore is encrypted either way.

Two rules protect the organisation from a domain key chosen by someone else (the broker
relays the blobs, so it could otherwise wrap a key it knows to this organisation's public
key and confirm guessed identifiers against its tokens):

- **the custodian is pinned.** The keystore keeps the fingerprint of the key custodian's
  identity key, as the custodian read it out (``init --custodian`` or, later,
  ``install-key --custodian`` / ``keys --custodian``). A blob not signed by that key is
  refused, and so is every blob while no custodian is pinned; a pin is never replaced.
- **a new version waits to be accepted.** The first version installed for a domain is the
  one tokenise uses. A newer one is installed but *waiting* until the organisation runs
  ``tessera-sdk keys --accept vN``; until then tokenise keeps the accepted version and logs
  that a newer one waits. Naming a version explicitly (``--key-version``) uses it.

Keystores made before pinning existed have no accepted version recorded: their oldest
installed version is used until one is accepted.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from client_sdk.errors import OrgStoreError
from keys.derive import DomainKey
from keys.errors import DuplicateKeyError, GrantRefusedError, KeystoreFormatError
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
from keys.wrapping import OrgPrivateKeys, OrgPublicKey, check_fingerprint, unwrap_key

__all__ = [
    "KEYSTORE_FILE",
    "PUBLIC_KEY_FILE",
    "InstalledKey",
    "KeyUse",
    "OrgStore",
    "public_key_fingerprint",
]

KEYSTORE_FILE = "org.keystore"
PUBLIC_KEY_FILE = "public-key.json"
_REFERENCE_SECRET = "reference"
_ORG_META = "org"
_CUSTODIAN_META = "custodian"
_ACCEPTED_META = "accepted/"

KeyUse = Literal["in use", "waiting", "kept"]
"""``in use``: the accepted version, which tokenise uses by default; ``waiting``: newer than
the accepted one and not yet accepted; ``kept``: older, still usable by naming it."""

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class InstalledKey:
    """A domain key version installed in an organisation's keystore (no key bytes)."""

    domain: str
    version: str
    key_id: str
    fingerprint: str
    installed_at: str
    use: KeyUse


def public_key_fingerprint(public_key_file_bytes: bytes) -> str:
    """The short fingerprint of a public key file, to read out over the phone.

    Raises:
        KeystoreFormatError: not a valid public key file.
    """
    return OrgPublicKey.from_file_bytes(public_key_file_bytes).fingerprint


def _accepted_label(contents: KeystoreContents, domain: Domain) -> str | None:
    """The accepted version of ``domain``: as recorded, else (older keystores) the oldest."""
    recorded = contents.meta.get(_ACCEPTED_META + domain.name)
    if recorded is not None or not domain.versions:
        return recorded
    return min(domain.versions, key=lambda v: parse_version(v.version)).version


def _use(version: KeyVersion, accepted: str | None) -> KeyUse:
    if accepted is None or version.version == accepted:
        return "in use"
    return "waiting" if parse_version(version.version) > parse_version(accepted) else "kept"


def _installed(version: KeyVersion, domain: str, accepted: str | None) -> InstalledKey:
    return InstalledKey(
        domain=domain,
        version=version.version,
        key_id=version.key_id,
        fingerprint=version.fingerprint,
        installed_at=version.created_at,
        use=_use(version, accepted),
    )


def _pin(contents: KeystoreContents, custodian: str, directory: Path) -> str:
    """Pin ``custodian`` in ``contents``; the same pin again changes nothing."""
    wanted = check_fingerprint(custodian)
    pinned = contents.meta.get(_CUSTODIAN_META)
    if pinned is not None and pinned != wanted:
        raise GrantRefusedError(
            f"{directory}: this organisation already pins key custodian {pinned}, not "
            f"{wanted}; a pin is never replaced (a new custodian means a new organisation "
            "directory)"
        )
    contents.meta[_CUSTODIAN_META] = wanted
    return wanted


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
        custodian: str | None = None,
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
            custodian: the key custodian's fingerprint, as read out, to pin now (or later,
                with :meth:`pin_custodian` or :meth:`install_blob`).
            kdf: Argon2id costs; lower them only in tests.
            lock_timeout: seconds to wait for another process's lock.
            rng: random source.

        Raises:
            OrgStoreError: the directory is already initialised.
            keys.errors.KeyManagementError: ``custodian`` is not a fingerprint.
        """
        check_name(org, what="organisation")
        meta = {_ORG_META: org}
        if custodian is not None:
            meta[_CUSTODIAN_META] = check_fingerprint(custodian)
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise OrgStoreError(
                f"{directory}: cannot create the directory: {exc.strerror}"
            ) from None
        private = OrgPrivateKeys.generate(rng=rng)
        contents = KeystoreContents(
            secrets={**private.to_secrets(), _REFERENCE_SECRET: rng(32)},
            meta=meta,
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

    @property
    def custodian(self) -> str | None:
        """The pinned key custodian's fingerprint, or ``None`` while none is pinned."""
        return self._keystore.read().meta.get(_CUSTODIAN_META)

    def pin_custodian(self, custodian: str) -> str:
        """Pin the key custodian whose fingerprint was read out; returns it canonical.

        Raises:
            keys.errors.GrantRefusedError: another custodian is pinned already.
            keys.errors.KeyManagementError: not a fingerprint.
        """
        with self._keystore.transaction() as contents:
            pinned = _pin(contents, custodian, self._directory)
        logger.info("pinned key custodian %s for %s", pinned, self._org)
        return pinned

    def domain_key(self, domain: str, version: str | None = None) -> tuple[DomainKey, str]:
        """An installed domain key and its version label.

        Args:
            domain: linkage domain name.
            version: e.g. ``"v2"``; ``None`` for the accepted version (never one that
                waits to be accepted: that is logged as a warning instead).

        Raises:
            OrgStoreError: that domain or version is not installed.
        """
        contents = self._keystore.read()
        found = contents.domains.get(domain)
        if found is None or not found.versions:
            raise OrgStoreError(
                f"no key for domain {domain} is installed in {self._directory} "
                "(ask the custodian for a grant, then run `tessera-sdk install-key`)"
            )
        label = _accepted_label(contents, found) if version is None else version
        matches = [v for v in found.versions if v.version == label]
        if not matches:
            raise OrgStoreError(f"domain {domain} {label} is not installed in {self._directory}")
        chosen = matches[0]
        if chosen.key is None:
            raise OrgStoreError(f"domain {domain} {chosen.version} has no key material")
        if version is None:
            for waiting in self.waiting_versions(domain, contents=contents):
                logger.warning(
                    "domain %s %s is installed but waits to be accepted: using %s "
                    "(run `tessera-sdk keys --dir %s --accept %s` to use it)",
                    domain,
                    waiting,
                    chosen.version,
                    self._directory,
                    waiting,
                )
        return chosen.key, chosen.version

    def waiting_versions(
        self, domain: str, *, contents: KeystoreContents | None = None
    ) -> list[str]:
        """Installed versions of ``domain`` newer than the accepted one, oldest first."""
        contents = self._keystore.read() if contents is None else contents
        found = contents.domains.get(domain)
        if found is None:
            return []
        accepted = _accepted_label(contents, found)
        return [
            v.version
            for v in sorted(found.versions, key=lambda v: parse_version(v.version))
            if _use(v, accepted) == "waiting"
        ]

    def accept_version(self, version: str, *, domain: str | None = None) -> InstalledKey:
        """Make an installed ``version`` the one tokenise uses by default.

        Args:
            version: e.g. ``"v2"``.
            domain: the domain; may be left out when only one domain has ``version``.

        Raises:
            OrgStoreError: that version is not installed, or ``domain`` is needed.
        """
        parse_version(version)
        with self._keystore.transaction() as contents:
            holders = [
                d
                for d in contents.domains.values()
                if (domain is None or d.name == domain)
                and any(v.version == version for v in d.versions)
            ]
            if not holders:
                where = f"domain {domain} " if domain is not None else ""
                raise OrgStoreError(f"{where}{version} is not installed in {self._directory}")
            if len(holders) > 1:
                names = ", ".join(sorted(d.name for d in holders))
                raise OrgStoreError(f"{version} is installed for {names}: name one with --domain")
            (chosen,) = holders
            contents.meta[_ACCEPTED_META + chosen.name] = version
            accepted = next(v for v in chosen.versions if v.version == version)
        logger.info("accepted domain %s %s for %s", chosen.name, version, self._org)
        return _installed(accepted, chosen.name, version)

    def install_blob(
        self, blob: bytes, *, source: str = "key blob", custodian: str | None = None
    ) -> InstalledKey:
        """Check a grant is the pinned custodian's, unwrap it, keep the key.

        The first version of a domain is accepted at once; a later one waits for
        :meth:`accept_version`. Installing the same key version again changes nothing.

        Args:
            blob: the wrapped key.
            source: how to name the blob in messages.
            custodian: the custodian's fingerprint as read out; pins it if none is pinned
                yet, and must match the pin otherwise.

        Raises:
            keys.errors.GrantRefusedError: no custodian pinned, not signed by the pinned
                one, or granted to another organisation or another public key.
            keys.errors.DecryptionError: the wrapped key does not open (one opaque message).
            keys.errors.KeystoreFormatError: not a blob, an unsigned format, or truncated.
            keys.errors.DuplicateKeyError: another key is installed under that version.
        """
        with self._keystore.transaction() as contents:
            if custodian is not None:
                _pin(contents, custodian, self._directory)
            pinned = contents.meta.get(_CUSTODIAN_META)
            if pinned is None:
                raise GrantRefusedError(
                    f"{source}: no key custodian is pinned for {self._org}, so no key can be "
                    "installed: give --custodian with the fingerprint the custodian read out "
                    "to you (to `tessera-sdk install-key` or `tessera-sdk keys`)"
                )
            opened = unwrap_key(
                blob,
                org=self._org,
                private_keys=self._private_keys(contents),
                custodian=pinned,
                source=source,
            )
            check_name(opened.domain, what="domain")
            parse_version(opened.version)
            existing = contents.domains.get(opened.domain) or Domain(opened.domain, ())
            versions = existing.versions
            accepted_key = _ACCEPTED_META + opened.domain
            for held in versions:
                if held.version == opened.version:
                    if held.key_id != opened.key_id or held.key != opened.key:
                        raise DuplicateKeyError(
                            f"domain {opened.domain} {opened.version} is already installed "
                            f"with another key (key id {held.key_id})"
                        )
                    return _installed(held, opened.domain, _accepted_label(contents, existing))
            # the first version is accepted at once; a keystore from before acceptance
            # records its implicit choice (the oldest) before a newer version arrives
            contents.meta.setdefault(
                accepted_key, _accepted_label(contents, existing) or opened.version
            )
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
            accepted = contents.meta[accepted_key]
        logger.info(
            "installed domain %s %s (key id %s) for %s",
            opened.domain,
            opened.version,
            opened.key_id,
            self._org,
        )
        return _installed(new, opened.domain, accepted)

    def installed(self) -> list[InstalledKey]:
        """Every installed domain key version, by domain then version."""
        contents = self._keystore.read()
        out: list[InstalledKey] = []
        for name in sorted(contents.domains):
            domain = contents.domains[name]
            accepted = _accepted_label(contents, domain)
            ordered = sorted(domain.versions, key=lambda v: parse_version(v.version))
            out += [_installed(v, name, accepted) for v in ordered]
        return out
