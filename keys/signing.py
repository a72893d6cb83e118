"""Ed25519 signatures: the broker's audit log signs with these, anyone can verify.

A private key is its 32-byte seed (as :class:`keys.keystore.ServiceSecrets` holds it); a
public key is its raw 32 bytes.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

__all__ = ["PUBLIC_KEY_BYTES", "SEED_BYTES", "SIGNATURE_BYTES", "public_key_of", "sign", "verify"]

SEED_BYTES = 32
PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64


def _private(private_seed: bytes) -> Ed25519PrivateKey:
    if len(private_seed) != SEED_BYTES:
        raise ValueError(f"an Ed25519 private seed is {SEED_BYTES} bytes")
    return Ed25519PrivateKey.from_private_bytes(private_seed)


def sign(private_seed: bytes, message: bytes) -> bytes:
    """Sign ``message``.

    Args:
        private_seed: 32-byte Ed25519 private seed.
        message: the bytes to sign.

    Returns:
        The 64-byte signature (deterministic: the same seed and message give the same bytes).
    """
    return _private(private_seed).sign(message)


def public_key_of(private_seed: bytes) -> bytes:
    """The raw 32-byte public key of an Ed25519 private seed."""
    return _private(private_seed).public_key().public_bytes_raw()


def verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """Whether ``signature`` is a valid signature of ``message`` under ``public_key``.

    Malformed keys or signatures give ``False`` rather than an exception.
    """
    if len(public_key) != PUBLIC_KEY_BYTES or len(signature) != SIGNATURE_BYTES:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True
