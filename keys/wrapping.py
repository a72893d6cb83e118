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

Custodian identity. The custodian signs every grant with an Ed25519 key kept in the
custodian keystore; its fingerprint (SHA-256 over ``"tessera/v1/custodian-public-key"`` and
the 32-byte public key, the same 100-bit five-group form) is read out to each organisation,
which pins it. An organisation installs only blobs signed by the custodian it pinned, so
whoever relays the blobs (the broker) cannot plant a domain key it chose: wrapping to an
organisation's public key needs nothing secret, signing does.

Wrapped key blob, format version 2 (integers big-endian, each text field a 2-byte length
then UTF-8)::

    b"TSWK"  version (1 byte, 2)  KEM (1 byte: 1 X25519, 2 ML-KEM-768+X25519)
    domain  version label  organisation  key id  key fingerprint  recipient fingerprint
    custodian public key (32 bytes, Ed25519)
    HPKE single-shot output: encapsulated key ‖ AES-256-GCM ciphertext of the 32-byte key
    signature (64 bytes, Ed25519 by the custodian key above over
               ``"tessera/v2/key-grant"`` ‖ every byte before the signature)

The recipient fingerprint is that of the organisation public key file the blob was wrapped
to, so a grant names exactly one key pair. The signature covers the whole header (domain,
version, key id, recipient) and the ciphertext. HPKE suite: the KEM above, HKDF-SHA256,
AES-256-GCM; ``info`` is ``"tessera/v2/wrapped-key"`` followed by every header byte before
the HPKE output. Format 1 had no signature and is refused.

Why a signature rather than HPKE's auth mode: the auth mode is defined only for
Diffie-Hellman KEMs, not for the hybrid ML-KEM-768+X25519 that grants use by default, and
``cryptography`` offers only the base mode; a signature works with both KEMs, and anyone
(the broker at deposit, an auditor) can check who made a blob without being able to open it.

The HPKE encapsulation draws its randomness inside OpenSSL, so golden vectors pin the header
and ``info`` byte for byte, check that a committed blob opens, and rebuild its signature
(Ed25519 is deterministic) rather than rebuilding the ciphertext.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from enum import Enum

from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric import mlkem
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from keys import signing
from keys.derive import DomainKey, fingerprint_key
from keys.errors import DecryptionError, GrantRefusedError, KeyManagementError, KeystoreFormatError
from keys.keystore import DOMAIN_KEY_BYTES, Rng, check_name, parse_version

__all__ = [
    "BLOB_FORMAT_VERSION",
    "BLOB_MAGIC",
    "GRANT_SIGNATURE_LABEL",
    "PUBLIC_KEY_FORMAT",
    "WRAP_INFO_LABEL",
    "BlobHeader",
    "Kem",
    "OrgPrivateKeys",
    "OrgPublicKey",
    "UnwrappedKey",
    "check_fingerprint",
    "custodian_fingerprint",
    "parse_blob_header",
    "unwrap_key",
    "verify_grant",
    "wrap_key",
]

BLOB_MAGIC = b"TSWK"
BLOB_FORMAT_VERSION = 2
PUBLIC_KEY_FORMAT = "tessera-org-public-key"
WRAP_INFO_LABEL = b"tessera/v2/wrapped-key"
GRANT_SIGNATURE_LABEL = b"tessera/v2/key-grant"
_PUBLIC_FINGERPRINT_LABEL = b"tessera/v1/org-public-key"
_CUSTODIAN_FINGERPRINT_LABEL = b"tessera/v1/custodian-public-key"
_FINGERPRINT = re.compile(r"[A-Z2-7]{20}")
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
    return _short_fingerprint(digest)


def _short_fingerprint(digest: bytes) -> str:
    """100 bits of ``digest`` as five groups of four base32 characters."""
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
    """The clear header of a wrapped key blob; all of it is bound into the HPKE info and
    covered by the custodian's signature.

    Attributes:
        kem: the KEM the key is wrapped with.
        domain: linkage domain.
        version: key version label.
        org: the organisation it is granted to.
        key_id: the version's opaque key id.
        fingerprint: the domain key version's fingerprint.
        recipient_fingerprint: fingerprint of the organisation public keys it is wrapped to.
        custodian_key: the custodian's raw Ed25519 public key (32 bytes) that signs it.
    """

    kem: Kem
    domain: str
    version: str
    org: str
    key_id: str
    fingerprint: str
    recipient_fingerprint: str
    custodian_key: bytes

    def pack(self) -> bytes:
        """The header bytes as the blob starts."""
        fields = (
            self.domain,
            self.version,
            self.org,
            self.key_id,
            self.fingerprint,
            self.recipient_fingerprint,
        )
        return (
            BLOB_MAGIC
            + bytes([BLOB_FORMAT_VERSION, self.kem.code])
            + b"".join(_field(v) for v in fields)
            + self.custodian_key
        )

    @property
    def info(self) -> bytes:
        """The HPKE ``info`` of a blob with this header."""
        return WRAP_INFO_LABEL + self.pack()

    @property
    def custodian_fingerprint(self) -> str:
        """Fingerprint of the custodian key that signs the blob."""
        return custodian_fingerprint(self.custodian_key)


@dataclass(frozen=True, slots=True)
class UnwrappedKey:
    """A domain key version opened from a blob (the key is never shown by ``repr``)."""

    domain: str
    version: str
    key_id: str
    fingerprint: str
    key: DomainKey = field(repr=False)


def custodian_fingerprint(public_key: bytes) -> str:
    """The short fingerprint of a custodian's Ed25519 public key, to read out by phone."""
    return _short_fingerprint(hashlib.sha256(_CUSTODIAN_FINGERPRINT_LABEL + public_key).digest())


def check_fingerprint(text: str, *, what: str = "custodian fingerprint") -> str:
    """``text`` as a canonical fingerprint (upper case, dashes), or :class:`KeyManagementError`.

    Spaces and lower case, as people type what they heard, are accepted.
    """
    compact = text.replace("-", "").replace(" ", "").upper()
    if not _FINGERPRINT.fullmatch(compact):
        raise KeyManagementError(
            f"a {what} is 20 letters and digits in five groups, like ABCD-EFGH-IJKL-MNOP-QRST"
        )
    return "-".join(compact[i : i + 4] for i in range(0, 20, 4))


def parse_blob_header(blob: bytes, *, source: str = "key blob") -> tuple[BlobHeader, bytes]:
    """Split a blob into its header and its HPKE output (the signature is not checked here).

    Raises:
        KeystoreFormatError: not a blob, an unsupported version, or truncated.
    """
    if len(blob) < 6:
        raise KeystoreFormatError(f"{source}: truncated or not a Tessera key blob")
    if blob[:4] != BLOB_MAGIC:
        raise KeystoreFormatError(f"{source}: not a Tessera key blob")
    if blob[4] == 1:
        raise KeystoreFormatError(
            f"{source}: an unsigned key blob (format 1), no longer accepted: ask the custodian "
            "for a new grant"
        )
    if blob[4] != BLOB_FORMAT_VERSION:
        raise KeystoreFormatError(f"{source}: key blob format version {blob[4]} is not supported")
    if blob[5] not in (1, 2):
        raise KeystoreFormatError(f"{source}: key blob header is malformed")
    kem = Kem.X25519 if blob[5] == 1 else Kem.HYBRID
    pos = 6
    fields: list[str] = []
    for _ in range(6):
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
    custodian_key = blob[pos : pos + signing.PUBLIC_KEY_BYTES]
    body = blob[pos + signing.PUBLIC_KEY_BYTES : len(blob) - signing.SIGNATURE_BYTES]
    expected = kem.enc_length() + DOMAIN_KEY_BYTES + _GCM_TAG_BYTES
    if len(custodian_key) != signing.PUBLIC_KEY_BYTES or len(body) != expected:
        raise KeystoreFormatError(f"{source}: truncated key blob")
    domain, version, org, key_id, fingerprint, recipient = fields
    header = BlobHeader(
        kem=kem,
        domain=domain,
        version=version,
        org=org,
        key_id=key_id,
        fingerprint=fingerprint,
        recipient_fingerprint=recipient,
        custodian_key=custodian_key,
    )
    return header, body


def verify_grant(
    blob: bytes, *, custodian: str, source: str = "key blob"
) -> tuple[BlobHeader, bytes]:
    """Check that ``blob`` is signed by the custodian whose fingerprint is ``custodian``.

    Needs no secret, so the broker or an auditor can run it as well as the organisation.

    Returns:
        The header and the HPKE output, as :func:`parse_blob_header`.

    Raises:
        KeystoreFormatError: not a blob, an unsupported (or unsigned) version, or truncated.
        GrantRefusedError: signed by another key, or the signature does not verify.
    """
    header, body = parse_blob_header(blob, source=source)
    if header.custodian_fingerprint != check_fingerprint(custodian):
        raise GrantRefusedError(
            f"{source}: not signed by the key custodian this organisation pinned "
            f"({custodian}); refused"
        )
    signed = blob[: len(blob) - signing.SIGNATURE_BYTES]
    signature = blob[len(blob) - signing.SIGNATURE_BYTES :]
    if not signing.verify(header.custodian_key, GRANT_SIGNATURE_LABEL + signed, signature):
        raise GrantRefusedError(
            f"{source}: the custodian's signature does not verify (altered or forged); refused"
        )
    return header, body


def wrap_key(
    key: DomainKey,
    *,
    domain: str,
    version: str,
    key_id: str,
    recipient: OrgPublicKey,
    signing_seed: bytes,
    kem: Kem = Kem.HYBRID,
) -> bytes:
    """Wrap one domain key version for one organisation and sign the grant.

    Args:
        key: the 32-byte domain key.
        domain: linkage domain name.
        version: key version label, e.g. ``"v2"``.
        key_id: the version's opaque key id.
        recipient: the organisation's public keys.
        signing_seed: the custodian's 32-byte Ed25519 private seed.
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
        recipient_fingerprint=recipient.fingerprint,
        custodian_key=signing.public_key_of(signing_seed),
    )
    try:
        wrapped = kem.suite().encrypt(key, recipient._hpke_key(kem), info=header.info)
    except ValueError:
        raise KeystoreFormatError(
            f"the public key of organisation {recipient.org} cannot be used for {kem.value}"
        ) from None
    signed = header.pack() + wrapped
    return signed + signing.sign(signing_seed, GRANT_SIGNATURE_LABEL + signed)


def unwrap_key(
    blob: bytes,
    *,
    org: str,
    private_keys: OrgPrivateKeys,
    custodian: str,
    source: str = "key blob",
) -> UnwrappedKey:
    """Open a blob granted to organisation ``org`` by the custodian it pinned.

    The checks run in this order, each with its own one-line error: the blob is well formed,
    signed by the custodian whose fingerprint is ``custodian`` (nothing else is installed,
    whoever relayed it), granted to ``org`` and to these very keys; then it is opened. A
    header relabelled to another domain, version or key fails the signature.

    Raises:
        KeystoreFormatError: not a blob, an unsupported or unsigned version, or truncated.
        GrantRefusedError: not signed by the pinned custodian, or granted to another
            organisation or another public key of this one.
        DecryptionError: the HPKE output does not open (never says why).
    """
    header, body = verify_grant(blob, custodian=custodian, source=source)
    if header.org != org:
        raise GrantRefusedError(
            f"{source}: this key blob was granted to another organisation, not to {org}"
        )
    own = private_keys.public(org).fingerprint
    if header.recipient_fingerprint != own:
        raise GrantRefusedError(
            f"{source}: this key blob was wrapped to other public keys of {org} "
            f"({header.recipient_fingerprint}, not {own}): ask the custodian for a new grant"
        )
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
