"""The one error tree of Tessera.

Every error Tessera raises on purpose descends from :class:`TesseraError`::

    TesseraError
    ├── KeyManagementError                 keys/: keystores, wrapping, specs
    │   ├── DecryptionError                wrong passphrase, tampered file or blob, wrong recipient:
    │   │                                  one type that never says which check failed
    │   ├── KeystoreFormatError            truncated file, unknown version or magic
    │   ├── KeystoreBusyError              another process holds the keystore lock
    │   ├── UnknownKeyError                unknown domain, key version or secret name
    │   ├── DuplicateKeyError              a domain or secret that already exists
    │   ├── GrantRefusedError              a key grant not signed by the pinned custodian, or
    │   │                                  granted to another organisation or public key
    │   └── SpecError                      a linkage spec that does not validate
    ├── MissingSecretError                 no passphrase in the environment, no terminal
    ├── SdkError                           client_sdk/ extends this branch in client_sdk/errors.py
    └── BrokerError                        broker/ extends this branch in broker/errors.py

Each class carries the ``exit_code`` a CLI exits with. Messages name files, lines, columns,
key ids and versions, never a value, token, key or credential.
"""

from __future__ import annotations

__all__ = [
    "BrokerError",
    "DecryptionError",
    "DuplicateKeyError",
    "GrantRefusedError",
    "KeyManagementError",
    "KeystoreBusyError",
    "KeystoreFormatError",
    "MissingSecretError",
    "SdkError",
    "SpecError",
    "TesseraError",
    "UnknownKeyError",
]


class TesseraError(Exception):
    """Root of every error Tessera raises on purpose."""

    exit_code: int = 1


class KeyManagementError(TesseraError):
    """A problem with keys, keystores, wrapped blobs or linkage specs."""

    exit_code = 2


class DecryptionError(KeyManagementError):
    """Something could not be opened: never says whether passphrase, tag or recipient failed."""

    exit_code = 3

    def __init__(self, what: str = "keystore") -> None:
        super().__init__(
            f"cannot open the {what}: wrong passphrase or key, or the file was altered"
        )


class KeystoreFormatError(KeyManagementError):
    """The file is not a keystore or blob of a version this code reads."""

    exit_code = 3


class KeystoreBusyError(KeyManagementError):
    """Another process is writing the keystore."""

    exit_code = 4


class UnknownKeyError(KeyManagementError, LookupError):
    """No such domain, key version or named secret."""

    exit_code = 5


class DuplicateKeyError(KeyManagementError):
    """The domain or secret already exists."""

    exit_code = 6


class GrantRefusedError(KeyManagementError):
    """A key grant this organisation must not install: unsigned, signed by someone other than
    the custodian it pinned, or granted to another organisation or another public key."""

    exit_code = 9


class SpecError(KeyManagementError, ValueError):
    """A linkage spec that does not validate: lists every problem at once."""

    exit_code = 7

    def __init__(self, source: str, problems: list[str]) -> None:
        self.problems = problems
        joined = "; ".join(problems)
        super().__init__(f"{source}: invalid linkage spec: {joined}")


class MissingSecretError(TesseraError):
    """A passphrase is needed, but its variable is unset and there is no terminal to ask on."""

    exit_code = 2


class SdkError(TesseraError):
    """Root of the client SDK's errors (see client_sdk/errors.py)."""

    exit_code = 10


class BrokerError(TesseraError):
    """Root of the broker's errors (see broker/errors.py).

    ``status_code`` and ``code`` become the HTTP status and the stable machine code of
    the error body.
    """

    exit_code = 20
    status_code: int = 500
    code: str = "internal_error"
