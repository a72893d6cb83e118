"""Organisation identities and HPKE (RFC 9180) wrapping of domain keys for one organisation.

An organisation holds two key pairs for receiving domain keys: X25519, and the hybrid
post-quantum ML-KEM-768+X25519. The custodian wraps a domain key version to one of them;
the blob can be opened only by that organisation and only as that domain and version,
because the whole blob header (domain, version, organisation, key id, fingerprint, KEM) is
the HPKE ``info``.

Public key file (UTF-8 JSON, what an organisation sends the custodian)::

    {"fingerprint": "ABCD-EFGH-IJKL-MNOP-QRST",
     "format": "tessera-org-public-key",
     "kems": {"mlkem768-x25519": BASE64(1184-byte ML-KEM-768 public key ‖ 32-byte X25519
                                         public key),
              "x25519": BASE64(32-byte X25519 public key)},
     "org": "north-trust",
     "version": 1}

The fingerprint (100 bits, five groups of four base32 characters, short enough to read out
over the phone) is SHA-256 over ``"tessera/v1/org-public-key"`` and the length-prefixed
organisation name and both public keys. It is recomputed whenever a file is read: a file
whose stated fingerprint does not match is refused.

Wrapped key blob, format version 1 (integers big-endian, each text field a 2-byte length
then UTF-8)::

    b"TSWK"  version (1 byte, 1)  KEM (1 byte: 1 X25519, 2 ML-KEM-768+X25519)
    domain  version label  organisation  key id  key fingerprint
    HPKE single-shot output: encapsulated key ‖ AES-256-GCM ciphertext of the 32-byte key

HPKE suite: the KEM above, HKDF-SHA256, AES-256-GCM; ``info`` is
``"tessera/v1/wrapped-key"`` followed by every header byte before the HPKE output. The
HPKE encapsulation draws its randomness inside OpenSSL, so golden vectors pin the header and
``info`` byte for byte and check that a committed blob opens, rather than rebuilding the
ciphertext.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from dataclasses import dataclass, field
from enum import Enum

from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric import mlkem
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from keys.derive import DomainKey, fingerprint_key
from keys.errors import DecryptionError, KeystoreFormatError
from keys.keystore import DOMAIN_KEY_BYTES, Rng, check_name, parse_version

__all__ = [
    "BLOB_FORMAT_VERSION",
    "BLOB_MAGIC",
    "PUBLIC_KEY_FORMAT",
    "WRAP_INFO_LABEL",
    "BlobHeader",
    "Kem",
    "OrgPrivateKeys",
    "OrgPublicKey",
    "UnwrappedKey",
    "parse_blob_header",
    "unwrap_key",
    "wrap_key",
]

BLOB_MAGIC = b"TSWK"
BLOB_FORMAT_VERSION = 1
PUBLIC_KEY_FORMAT = "tessera-org-public-key"
WRAP_INFO_LABEL = b"tessera/v1/wrapped-key"
_PUBLIC_FINGERPRINT_LABEL = b"tessera/v1/org-public-key"
_X25519_BYTES = 32
_MLKEM768_PUBLIC_BYTES = 1184
_MLKEM_SEED_BYTES = 64
_GCM_TAG_BYTES = 16


class Kem(Enum):
    """The KEM a blob is wrapped with; the value is its CLI spelling."""

    X25519 = "x25519"
    HYBRID = "hybrid"

    @property
    def code(self) -> int:
        """Byte that names the KEM in a blob header."""
        return 1 if self is Kem.X25519 else 2

    @property
    def file_name(self) -> str:
        """Name of this KEM's key in the public key file."""
        return "x25519" if self is Kem.X25519 else "mlkem768-x25519"

    def suite(self) -> hpke.Suite:
        """The HPKE suite of this KEM."""
        kem = hpke.KEM.X25519 if self is Kem.X25519 else hpke.KEM.MLKEM768_X25519
        return hpke.Suite(kem, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)

    def enc_length(self) -> int:
        """Bytes of the encapsulated key that starts the HPKE output."""
        kem = hpke.KEM.X25519 if self is Kem.X25519 else hpke.KEM.MLKEM768_X25519
        return kem.enc_length()


def _field(value: str) -> bytes:
    raw = value.encode()
    if len(raw) > 0xFFFF:
        raise ValueError("field longer than 65535 bytes")
    return len(raw).to_bytes(2, "big") + raw


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _public_fingerprint(org: str, x25519_public: bytes, hybrid_public: bytes) -> str:
    digest = hashlib.sha256(
        _PUBLIC_FINGERPRINT_LABEL
        + _field(org)
        + len(x25519_public).to_bytes(2, "big")
        + x25519_public
        + len(hybrid_public).to_bytes(2, "big")
        + hybrid_public
    ).digest()
    text = base64.b32encode(digest[:15]).decode()[:20]
    return "-".join(text[i : i + 4] for i in range(0, 20, 4))


@dataclass(frozen=True, slots=True)
class OrgPublicKey:
    """An organisation's public keys, as the custodian receives them.

    Attributes:
        org: organisation name.
        x25519: raw X25519 public key (32 bytes).
        hybrid: ML-KEM-768 public key (1184 bytes) followed by an X25519 public key.
    """

    org: str
    x25519: bytes
    hybrid: bytes

    @property
    def fingerprint(self) -> str:
        """Short fingerprint to read out over the phone, e.g. ``ABCD-EFGH-IJKL-MNOP-QRST``."""
        return _public_fingerprint(self.org, self.x25519, self.hybrid)

    def to_file_bytes(self) -> bytes:
        """The public key file (documented in this module's docstring)."""
        doc = {
            "fingerprint": self.fingerprint,
            "format": PUBLIC_KEY_FORMAT,
            "kems": {
                Kem.HYBRID.file_name: _b64(self.hybrid),
                Kem.X25519.file_name: _b64(self.x25519),
            },
            "org": self.org,
            "version": 1,
        }
        return (json.dumps(doc, sort_keys=True, indent=2) + "\n").encode()

    @classmethod
    def from_file_bytes(cls, data: bytes, *, source: str = "public key file") -> OrgPublicKey:
        """Parse and check a public key file.

        Raises:
            KeystoreFormatError: not a public key file, a version this code does not read,
                malformed keys, or a stated fingerprint that does not match.
        """
        bad = KeystoreFormatError(f"{source}: not a valid Tessera organisation public key file")
        try:
            doc = json.loads(data)
            if doc["format"] != PUBLIC_KEY_FORMAT:
                raise bad
            if doc["version"] != 1:
                raise KeystoreFormatError(
                    f"{source}: public key file version {doc['version']} is not supported"
                )
            org = check_name(str(doc["org"]), what="organisation")
            x_pub = base64.b64decode(doc["kems"][Kem.X25519.file_name], validate=True)
            h_pub = base64.b64decode(doc["kems"][Kem.HYBRID.file_name], validate=True)
            stated = doc["fingerprint"]
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise bad from exc
        if len(x_pub) != _X25519_BYTES or len(h_pub) != _MLKEM768_PUBLIC_BYTES + _X25519_BYTES:
            raise bad
        public = cls(org=org, x25519=x_pub, hybrid=h_pub)
        if stated != public.fingerprint:
            raise KeystoreFormatError(f"{source}: the stated fingerprint does not match the keys")
        try:
            for kem in Kem:
                public._hpke_key(kem)
        except ValueError:
            raise bad from None
        return public

    def _hpke_key(self, kem: Kem) -> X25519PublicKey | hpke.MLKEM768X25519PublicKey:
        if kem is Kem.X25519:
            return X25519PublicKey.from_public_bytes(self.x25519)
        return hpke.MLKEM768X25519PublicKey(
            mlkem.MLKEM768PublicKey.from_public_bytes(self.hybrid[:_MLKEM768_PUBLIC_BYTES]),
            X25519PublicKey.from_public_bytes(self.hybrid[_MLKEM768_PUBLIC_BYTES:]),
        )


@dataclass(frozen=True, slots=True)
class OrgPrivateKeys:
    """An organisation's private keys (never shown by ``repr``).

    Attributes:
        x25519: X25519 private key (32 bytes).
        hybrid_mlkem768_seed: ML-KEM-768 private seed (64 bytes) of the hybrid pair.
        hybrid_x25519: X25519 private key (32 bytes) of the hybrid pair, distinct from
            ``x25519``.
    """

    x25519: bytes = field(repr=False)
    hybrid_mlkem768_seed: bytes = field(repr=False)
    hybrid_x25519: bytes = field(repr=False)

    @classmethod
    def generate(cls, *, rng: Rng = os.urandom) -> OrgPrivateKeys:
        """Fresh key pairs: 32, 64 and 32 bytes drawn from ``rng`` in that order."""
        return cls(
            x25519=rng(_X25519_BYTES),
            hybrid_mlkem768_seed=rng(_MLKEM_SEED_BYTES),
            hybrid_x25519=rng(_X25519_BYTES),
        )

    def to_secrets(self) -> dict[str, bytes]:
        """Named secrets as an organisation keystore holds them."""
        return {
            "hybrid_mlkem768_seed": self.hybrid_mlkem768_seed,
            "hybrid_x25519": self.hybrid_x25519,
            "x25519": self.x25519,
        }

    @classmethod
    def from_secrets(cls, secrets: dict[str, bytes]) -> OrgPrivateKeys:
        """Rebuild from :meth:`to_secrets` output.

        Raises:
            KeystoreFormatError: a secret is missing or has the wrong length.
        """
        try:
            keys = cls(
                x25519=secrets["x25519"],
                hybrid_mlkem768_seed=secrets["hybrid_mlkem768_seed"],
                hybrid_x25519=secrets["hybrid_x25519"],
            )
        except KeyError:
            raise KeystoreFormatError("organisation keystore lacks its private keys") from None
        if (len(keys.x25519), len(keys.hybrid_mlkem768_seed), len(keys.hybrid_x25519)) != (
            _X25519_BYTES,
            _MLKEM_SEED_BYTES,
            _X25519_BYTES,
        ):
            raise KeystoreFormatError("organisation keystore has malformed private keys")
        return keys

    def public(self, org: str) -> OrgPublicKey:
        """The public half, for organisation ``org``."""
        x_pub = X25519PrivateKey.from_private_bytes(self.x25519).public_key()
        m_pub = mlkem.MLKEM768PrivateKey.from_seed_bytes(self.hybrid_mlkem768_seed).public_key()
        hx_pub = X25519PrivateKey.from_private_bytes(self.hybrid_x25519).public_key()
        return OrgPublicKey(
            org=check_name(org, what="organisation"),
            x25519=x_pub.public_bytes_raw(),
            hybrid=m_pub.public_bytes_raw() + hx_pub.public_bytes_raw(),
        )

    def _hpke_key(self, kem: Kem) -> X25519PrivateKey | hpke.MLKEM768X25519PrivateKey:
        if kem is Kem.X25519:
            return X25519PrivateKey.from_private_bytes(self.x25519)
        return hpke.MLKEM768X25519PrivateKey(
            mlkem.MLKEM768PrivateKey.from_seed_bytes(self.hybrid_mlkem768_seed),
            X25519PrivateKey.from_private_bytes(self.hybrid_x25519),
        )


@dataclass(frozen=True, slots=True)
class BlobHeader:
    """The clear header of a wrapped key blob; all of it is bound into the HPKE info."""

    kem: Kem
    domain: str
    version: str
    org: str
    key_id: str
    fingerprint: str

    def pack(self) -> bytes:
        """The header bytes as the blob starts."""
        return (
            BLOB_MAGIC
            + bytes([BLOB_FORMAT_VERSION, self.kem.code])
            + b"".join(
                _field(v)
                for v in (self.domain, self.version, self.org, self.key_id, self.fingerprint)
            )
        )

    @property
    def info(self) -> bytes:
        """The HPKE ``info`` of a blob with this header."""
        return WRAP_INFO_LABEL + self.pack()


@dataclass(frozen=True, slots=True)
class UnwrappedKey:
    """A domain key version opened from a blob (the key is never shown by ``repr``)."""

    domain: str
    version: str
    key_id: str
    fingerprint: str
    key: DomainKey = field(repr=False)


def parse_blob_header(blob: bytes, *, source: str = "key blob") -> tuple[BlobHeader, bytes]:
    """Split a blob into its header and its HPKE output.

    Raises:
        KeystoreFormatError: not a blob, an unsupported version, or truncated.
    """
    if len(blob) < 6:
        raise KeystoreFormatError(f"{source}: truncated or not a Tessera key blob")
    if blob[:4] != BLOB_MAGIC:
        raise KeystoreFormatError(f"{source}: not a Tessera key blob")
    if blob[4] != BLOB_FORMAT_VERSION:
        raise KeystoreFormatError(f"{source}: key blob format version {blob[4]} is not supported")
    if blob[5] not in (1, 2):
        raise KeystoreFormatError(f"{source}: key blob header is malformed")
    kem = Kem.X25519 if blob[5] == 1 else Kem.HYBRID
    pos = 6
    fields: list[str] = []
    for _ in range(5):
        if pos + 2 > len(blob):
            raise KeystoreFormatError(f"{source}: truncated key blob")
        size = int.from_bytes(blob[pos : pos + 2], "big")
        pos += 2
        if pos + size > len(blob):
            raise KeystoreFormatError(f"{source}: truncated key blob")
        try:
            fields.append(blob[pos : pos + size].decode())
        except UnicodeDecodeError:
            raise KeystoreFormatError(f"{source}: key blob header is malformed") from None
        pos += size
    body = blob[pos:]
    if len(body) != kem.enc_length() + DOMAIN_KEY_BYTES + _GCM_TAG_BYTES:
        raise KeystoreFormatError(f"{source}: truncated key blob")
    domain, version, org, key_id, fingerprint = fields
    header = BlobHeader(
        kem=kem, domain=domain, version=version, org=org, key_id=key_id, fingerprint=fingerprint
    )
    return header, body


def wrap_key(
    key: DomainKey,
    *,
    domain: str,
    version: str,
    key_id: str,
    recipient: OrgPublicKey,
    kem: Kem = Kem.HYBRID,
) -> bytes:
    """Wrap one domain key version for one organisation.

    Args:
        key: the 32-byte domain key.
        domain: linkage domain name.
        version: key version label, e.g. ``"v2"``.
        key_id: the version's opaque key id.
        recipient: the organisation's public keys.
        kem: hybrid ML-KEM-768+X25519 (default) or X25519 alone.

    Returns:
        The blob (format in this module's docstring).
    """
    check_name(domain, what="domain")
    parse_version(version)
    if len(key) != DOMAIN_KEY_BYTES:
        raise ValueError(f"a domain key is {DOMAIN_KEY_BYTES} bytes")
    header = BlobHeader(
        kem=kem,
        domain=domain,
        version=version,
        org=recipient.org,
        key_id=key_id,
        fingerprint=fingerprint_key(key),
    )
    try:
        wrapped = kem.suite().encrypt(key, recipient._hpke_key(kem), info=header.info)
    except ValueError:
        raise KeystoreFormatError(
            f"the public key of organisation {recipient.org} cannot be used for {kem.value}"
        ) from None
    return header.pack() + wrapped


def unwrap_key(
    blob: bytes, *, org: str, private_keys: OrgPrivateKeys, source: str = "key blob"
) -> UnwrappedKey:
    """Open a blob granted to organisation ``org``.

    A blob for another organisation, or one whose header names another domain, version or
    key than it was wrapped as, fails exactly like a tampered one.

    Raises:
        KeystoreFormatError: not a blob, an unsupported version, or truncated.
        DecryptionError: not for this organisation, altered, or wrapped under other keys
            (never says which).
    """
    header, body = parse_blob_header(blob, source=source)
    if header.org != org:
        raise DecryptionError("key blob")
    try:
        key = header.kem.suite().decrypt(body, private_keys._hpke_key(header.kem), info=header.info)
    except Exception:  # HPKE raises InvalidTag, or ValueError on a malformed encapsulation
        raise DecryptionError("key blob") from None
    if len(key) != DOMAIN_KEY_BYTES or fingerprint_key(key) != header.fingerprint:
        raise DecryptionError("key blob")
    return UnwrappedKey(
        domain=header.domain,
        version=header.version,
        key_id=header.key_id,
        fingerprint=header.fingerprint,
        key=DomainKey(key),
    )
