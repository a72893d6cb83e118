"""Ed25519 signing as the audit log uses it."""

from __future__ import annotations

from keys.signing import public_key_of, sign, verify

SEED = bytes(range(32))


def test_sign_and_verify():
    public = public_key_of(SEED)
    signature = sign(SEED, b"audit entry 1")
    assert len(public) == 32 and len(signature) == 64
    assert sign(SEED, b"audit entry 1") == signature
    assert verify(public, b"audit entry 1", signature)


def test_rfc8032_test_vector_1():
    seed = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
    public = public_key_of(seed)
    assert public.hex() == "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
    assert (
        sign(seed, b"")
        .hex()
        .startswith("e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e0652249015")
    )


def test_verify_rejects_changes_and_garbage():
    public = public_key_of(SEED)
    signature = sign(SEED, b"m")
    assert not verify(public, b"n", signature)
    assert not verify(public_key_of(bytes(32)), b"m", signature)
    assert not verify(public, b"m", signature[:-1] + bytes([signature[-1] ^ 1]))
    assert not verify(public[:5], b"m", signature)
    assert not verify(public, b"m", b"short")
