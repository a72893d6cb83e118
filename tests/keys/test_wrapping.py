"""HPKE wrapping: only the named organisation opens a blob, only as its domain and version."""

from __future__ import annotations

import json

import pytest

from keys.derive import DomainKey, fingerprint_key
from keys.errors import DecryptionError, KeystoreFormatError
from keys.wrapping import (
    BlobHeader,
    Kem,
    OrgPrivateKeys,
    OrgPublicKey,
    parse_blob_header,
    unwrap_key,
    wrap_key,
)

KEY = DomainKey(bytes(range(32)))


@pytest.fixture(scope="module")
def north() -> OrgPrivateKeys:
    return OrgPrivateKeys.generate()


@pytest.fixture(scope="module")
def south() -> OrgPrivateKeys:
    return OrgPrivateKeys.generate()


def _wrap(private: OrgPrivateKeys, org: str, kem: Kem, **overrides: str) -> bytes:
    args = {"domain": "somerset-health", "version": "v1", "key_id": "kid-00ff"} | overrides
    return wrap_key(KEY, recipient=private.public(org), kem=kem, **args)


def _relabel(blob: bytes, **changes: str) -> bytes:
    header, body = parse_blob_header(blob)
    fields = {
        "kem": header.kem,
        "domain": header.domain,
        "version": header.version,
        "org": header.org,
        "key_id": header.key_id,
        "fingerprint": header.fingerprint,
    } | changes
    return BlobHeader(**fields).pack() + body  # type: ignore[arg-type]


@pytest.mark.parametrize("kem", list(Kem))
def test_round_trip(north: OrgPrivateKeys, kem: Kem):
    blob = _wrap(north, "north-trust", kem)
    opened = unwrap_key(blob, org="north-trust", private_keys=north)
    assert (opened.domain, opened.version, opened.key_id) == ("somerset-health", "v1", "kid-00ff")
    assert opened.key == KEY and opened.fingerprint == fingerprint_key(KEY)
    assert KEY.hex() not in repr(opened)
    assert bytes(KEY) not in blob


def test_hybrid_is_the_default_and_larger(north: OrgPrivateKeys):
    blob = wrap_key(
        KEY, domain="d", version="v1", key_id="kid-1", recipient=north.public("north-trust")
    )
    assert parse_blob_header(blob)[0].kem is Kem.HYBRID
    assert len(blob) > len(_wrap(north, "north-trust", Kem.X25519)) + 1000


@pytest.mark.parametrize("kem", list(Kem))
def test_another_org_cannot_open_it(north: OrgPrivateKeys, south: OrgPrivateKeys, kem: Kem):
    blob = _wrap(north, "north-trust", kem)
    with pytest.raises(DecryptionError) as by_name:
        unwrap_key(blob, org="south-council", private_keys=south)
    # even relabelled as south's blob, south's keys do not open it
    with pytest.raises(DecryptionError) as by_keys:
        unwrap_key(_relabel(blob, org="south-council"), org="south-council", private_keys=south)
    assert (
        str(by_name.value)
        == str(by_keys.value)
        == ("cannot open the key blob: wrong passphrase or key, or the file was altered")
    )


@pytest.mark.parametrize(
    "change",
    [
        {"domain": "other-domain"},
        {"version": "v2"},
        {"key_id": "kid-beef"},
        {"fingerprint": "AAAA-BBBB-CCCC"},
        {"org": "north-trust2"},
    ],
    ids=lambda c: next(iter(c)),
)
@pytest.mark.parametrize("kem", list(Kem))
def test_a_relabelled_header_fails_like_tampering(north: OrgPrivateKeys, kem: Kem, change):
    blob = _relabel(_wrap(north, "north-trust", kem), **change)
    org = change.get("org", "north-trust")
    with pytest.raises(DecryptionError):
        unwrap_key(blob, org=org, private_keys=north)


def test_swapped_kem_byte_and_flipped_ciphertext_fail(north: OrgPrivateKeys):
    blob = bytearray(_wrap(north, "north-trust", Kem.X25519))
    blob[-1] ^= 1
    with pytest.raises(DecryptionError):
        unwrap_key(bytes(blob), org="north-trust", private_keys=north)
    blob[-1] ^= 1
    blob[-40] ^= 1  # inside the encapsulated key
    with pytest.raises(DecryptionError):
        unwrap_key(bytes(blob), org="north-trust", private_keys=north)


def test_truncated_and_foreign_blobs(north: OrgPrivateKeys):
    blob = _wrap(north, "north-trust", Kem.HYBRID)
    for cut in (3, 10, 40, len(blob) - 1):
        with pytest.raises(KeystoreFormatError, match="truncated|not a Tessera key blob"):
            unwrap_key(blob[:cut], org="north-trust", private_keys=north)
    with pytest.raises(KeystoreFormatError, match="not a Tessera key blob"):
        unwrap_key(b"TESSERAK" + blob, org="north-trust", private_keys=north)
    with pytest.raises(KeystoreFormatError, match="format version 2 is not supported"):
        unwrap_key(blob[:4] + b"\x02" + blob[5:], org="north-trust", private_keys=north)


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
        wrap_key(KEY, domain="d", version="v1", key_id="kid-1", recipient=bogus, kem=kem)
