"""HPKE wrapping: only the named organisation opens a blob, only as its domain and version,
and only if the custodian it pinned signed it."""

from __future__ import annotations

import dataclasses
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keys import signing
from keys.derive import DomainKey, fingerprint_key
from keys.errors import DecryptionError, GrantRefusedError, KeyManagementError, KeystoreFormatError
from keys.wrapping import (
    GRANT_SIGNATURE_LABEL,
    Kem,
    OrgPrivateKeys,
    OrgPublicKey,
    check_fingerprint,
    custodian_fingerprint,
    parse_blob_header,
    unwrap_key,
    verify_grant,
    wrap_key,
)

KEY = DomainKey(bytes(range(32)))
CUSTODIAN_SEED = bytes([7]) * 32
CUSTODIAN = custodian_fingerprint(signing.public_key_of(CUSTODIAN_SEED))
STRANGER_SEED = bytes([9]) * 32  # e.g. the broker: it can wrap to a public key, not sign


@pytest.fixture(scope="module")
def north() -> OrgPrivateKeys:
    return OrgPrivateKeys.generate()


@pytest.fixture(scope="module")
def south() -> OrgPrivateKeys:
    return OrgPrivateKeys.generate()


def _wrap(
    private: OrgPrivateKeys, org: str, kem: Kem, *, seed: bytes = CUSTODIAN_SEED, **overrides: str
) -> bytes:
    args = {"domain": "somerset-health", "version": "v1", "key_id": "kid-00ff"} | overrides
    return wrap_key(KEY, recipient=private.public(org), kem=kem, signing_seed=seed, **args)


def _open(blob: bytes, private: OrgPrivateKeys, org: str = "north-trust"):
    return unwrap_key(blob, org=org, private_keys=private, custodian=CUSTODIAN)


def _resign(unsigned: bytes, seed: bytes = CUSTODIAN_SEED) -> bytes:
    return unsigned + signing.sign(seed, GRANT_SIGNATURE_LABEL + unsigned)


def _relabel(blob: bytes, *, seed: bytes | None = None, **changes) -> bytes:
    """The blob with header fields changed; re-signed with ``seed`` if given, else the old
    signature kept."""
    header, body = parse_blob_header(blob)
    unsigned = dataclasses.replace(header, **changes).pack() + body
    return _resign(unsigned, seed) if seed is not None else unsigned + blob[-64:]


@pytest.mark.parametrize("kem", list(Kem))
def test_round_trip(north: OrgPrivateKeys, kem: Kem):
    blob = _wrap(north, "north-trust", kem)
    opened = _open(blob, north)
    assert (opened.domain, opened.version, opened.key_id) == ("somerset-health", "v1", "kid-00ff")
    assert opened.key == KEY and opened.fingerprint == fingerprint_key(KEY)
    assert KEY.hex() not in repr(opened)
    assert bytes(KEY) not in blob and CUSTODIAN_SEED not in blob
    header, _ = verify_grant(blob, custodian=CUSTODIAN)  # needs no secret
    assert header.custodian_fingerprint == CUSTODIAN
    assert header.recipient_fingerprint == north.public("north-trust").fingerprint


def test_hybrid_is_the_default_and_larger(north: OrgPrivateKeys):
    blob = wrap_key(
        KEY,
        domain="d",
        version="v1",
        key_id="kid-1",
        recipient=north.public("north-trust"),
        signing_seed=CUSTODIAN_SEED,
    )
    assert parse_blob_header(blob)[0].kem is Kem.HYBRID
    assert len(blob) > len(_wrap(north, "north-trust", Kem.X25519)) + 1000


@pytest.mark.parametrize("kem", list(Kem))
def test_a_blob_signed_by_anyone_but_the_pinned_custodian_is_refused(north, kem: Kem):
    planted = _wrap(north, "north-trust", kem, seed=STRANGER_SEED)
    with pytest.raises(GrantRefusedError, match="not signed by the key custodian"):
        _open(planted, north)
    # claiming the custodian's public key does not help: the signature fails
    header, _ = parse_blob_header(planted)
    disguised = _relabel(planted, custodian_key=signing.public_key_of(CUSTODIAN_SEED))
    assert parse_blob_header(disguised)[0].custodian_fingerprint == CUSTODIAN
    with pytest.raises(GrantRefusedError, match="signature does not verify"):
        _open(disguised, north)
    assert header.custodian_fingerprint != CUSTODIAN


@pytest.mark.parametrize("kem", list(Kem))
def test_another_orgs_blob_says_so(north: OrgPrivateKeys, south: OrgPrivateKeys, kem: Kem):
    blob = _wrap(north, "north-trust", kem)
    with pytest.raises(GrantRefusedError) as refused:
        _open(blob, south, "south-council")
    message = str(refused.value)
    assert "granted to another organisation, not to south-council" in message
    assert "passphrase" not in message and "north-trust" not in message
    # relabelled as south's blob, the signature no longer verifies
    with pytest.raises(GrantRefusedError, match="signature does not verify"):
        _open(_relabel(blob, org="south-council"), south, "south-council")


def test_a_grant_to_older_keys_of_the_same_org_says_so(north: OrgPrivateKeys):
    blob = _wrap(north, "north-trust", Kem.X25519)
    reinitialised = OrgPrivateKeys.generate()
    with pytest.raises(GrantRefusedError, match="wrapped to other public keys of north-trust"):
        _open(blob, reinitialised)


@pytest.mark.parametrize(
    "change",
    [
        {"domain": "other-domain"},
        {"version": "v2"},
        {"key_id": "kid-beef"},
        {"fingerprint": "AAAA-BBBB-CCCC"},
        {"org": "north-trust2"},
        {"recipient_fingerprint": "AAAA-BBBB-CCCC-DDDD-EEEE"},
    ],
    ids=lambda c: next(iter(c)),
)
@pytest.mark.parametrize("kem", list(Kem))
def test_a_relabelled_header_fails_the_signature(north: OrgPrivateKeys, kem: Kem, change):
    blob = _relabel(_wrap(north, "north-trust", kem), **change)
    org = change.get("org", "north-trust")
    with pytest.raises(GrantRefusedError, match="signature does not verify"):
        unwrap_key(blob, org=org, private_keys=north, custodian=CUSTODIAN)


@pytest.mark.parametrize("kem", list(Kem))
def test_a_relabelled_header_even_custodian_signed_does_not_open(north, kem: Kem):
    """HPKE binds the header as its info: relabelling fails even with a valid signature."""
    for change in ({"domain": "other-domain"}, {"version": "v2"}, {"key_id": "kid-beef"}):
        blob = _relabel(_wrap(north, "north-trust", kem), seed=CUSTODIAN_SEED, **change)
        with pytest.raises(DecryptionError):
            _open(blob, north)


def test_a_flipped_ciphertext_fails(north: OrgPrivateKeys):
    blob = bytearray(_wrap(north, "north-trust", Kem.X25519))
    blob[-65] ^= 1  # last byte of the ciphertext
    with pytest.raises(GrantRefusedError, match="signature does not verify"):
        _open(bytes(blob), north)
    with pytest.raises(DecryptionError):  # re-signed by the custodian: HPKE still refuses
        _open(_resign(bytes(blob[:-64])), north)


@settings(max_examples=60, deadline=None)
@given(position=st.integers(min_value=0), flip=st.integers(min_value=1, max_value=255))
def test_no_single_byte_change_yields_a_key(north: OrgPrivateKeys, position: int, flip: int):
    blob = bytearray(_wrap(north, "north-trust", Kem.X25519))
    blob[position % len(blob)] ^= flip
    with pytest.raises(KeyManagementError):
        _open(bytes(blob), north)


def test_truncated_unsigned_and_foreign_blobs(north: OrgPrivateKeys):
    blob = _wrap(north, "north-trust", Kem.HYBRID)
    for cut in (3, 10, 40, len(blob) - 1):
        with pytest.raises(KeystoreFormatError, match="truncated|not a Tessera key blob"):
            _open(blob[:cut], north)
    with pytest.raises(KeystoreFormatError, match="not a Tessera key blob"):
        _open(b"TESSERAK" + blob, north)
    with pytest.raises(KeystoreFormatError, match="format version 3 is not supported"):
        _open(blob[:4] + b"\x03" + blob[5:], north)
    with pytest.raises(KeystoreFormatError, match=r"unsigned key blob \(format 1\)"):
        _open(blob[:4] + b"\x01" + blob[5:], north)


def test_fingerprints_are_checked_and_normalised():
    assert check_fingerprint(CUSTODIAN.lower().replace("-", " ")) == CUSTODIAN
    for bad in ("", "ABCD", CUSTODIAN + "A", CUSTODIAN.replace(CUSTODIAN[0], "1")):
        with pytest.raises(KeyManagementError, match="20 letters and digits"):
            check_fingerprint(bad)
    assert custodian_fingerprint(signing.public_key_of(STRANGER_SEED)) != CUSTODIAN


def test_public_key_file_round_trip_and_checks(north: OrgPrivateKeys):
    public = north.public("north-trust")
    data = public.to_file_bytes()
    doc = json.loads(data)
    assert doc["format"] == "tessera-org-public-key" and doc["org"] == "north-trust"
    assert OrgPublicKey.from_file_bytes(data) == public
    assert len(public.fingerprint) == 24 and public.fingerprint.count("-") == 4
    # reformatting the JSON does not change the fingerprint
    assert OrgPublicKey.from_file_bytes(json.dumps(doc).encode()).fingerprint == public.fingerprint
    other = OrgPrivateKeys.generate().public("north-trust")
    swapped = doc | {"kems": json.loads(other.to_file_bytes())["kems"]}
    with pytest.raises(KeystoreFormatError, match="stated fingerprint does not match"):
        OrgPublicKey.from_file_bytes(json.dumps(swapped).encode())
    renamed = doc | {"org": "evil-trust"}
    with pytest.raises(KeystoreFormatError, match="stated fingerprint does not match"):
        OrgPublicKey.from_file_bytes(json.dumps(renamed).encode())
    for bad in (b"not json", b"{}", json.dumps(doc | {"format": "x"}).encode()):
        with pytest.raises(KeystoreFormatError, match="not a valid Tessera organisation"):
            OrgPublicKey.from_file_bytes(bad)


def test_private_keys_hide_in_repr(north: OrgPrivateKeys):
    assert repr(north) == "OrgPrivateKeys()"
    with pytest.raises(KeystoreFormatError):
        OrgPrivateKeys.from_secrets({"x25519": bytes(32)})


@pytest.mark.parametrize("kem", list(Kem))
def test_an_unusable_public_key_is_refused_in_one_line(north: OrgPrivateKeys, kem: Kem):
    good = north.public("north-trust")
    bogus = OrgPublicKey(org="north-trust", x25519=bytes(32), hybrid=bytes(1216))
    assert OrgPublicKey.from_file_bytes(good.to_file_bytes()) == good
    with pytest.raises(KeystoreFormatError, match=f"cannot be used for {kem.value}"):
        wrap_key(
            KEY,
            domain="d",
            version="v1",
            key_id="kid-1",
            recipient=bogus,
            signing_seed=CUSTODIAN_SEED,
            kem=kem,
        )
