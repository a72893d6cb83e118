"""The organisation side: identity, local keystore, installing granted keys."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from client_sdk.errors import OrgStoreError
from client_sdk.orgstore import OrgStore, public_key_fingerprint
from keys.errors import DecryptionError, DuplicateKeyError, KeystoreFormatError
from keys.keystore import KdfParams, Keystore, create_domain
from keys.rotation import grant_key, rewrap_domain, rotate_domain
from keys.wrapping import Kem, OrgPublicKey

FAST = KdfParams(memory_cost=64, iterations=1, lanes=1)


@pytest.fixture
def custodian(tmp_path: Path) -> Keystore:
    store = Keystore.create(tmp_path / "custodian.keystore", "custodian pw", kdf=FAST)
    create_domain(store, "somerset-health")
    return store


@pytest.fixture
def north(tmp_path: Path) -> OrgStore:
    return OrgStore.create(tmp_path / "north", "north-trust", "north pw", kdf=FAST)


def _public(store: OrgStore) -> OrgPublicKey:
    return OrgPublicKey.from_file_bytes(store.public_key_path.read_bytes())


def test_init_writes_encrypted_store_and_public_file(north: OrgStore):
    assert north.org == "north-trust"
    assert stat.S_IMODE(north.directory.stat().st_mode) == 0o700
    assert sorted(p.name for p in north.directory.iterdir()) == [
        "org.keystore",
        "org.keystore.lock",
        "public-key.json",
    ]
    doc = json.loads(north.public_key_path.read_text())
    assert doc["org"] == "north-trust"
    assert public_key_fingerprint(north.public_key_path.read_bytes()) == north.fingerprint
    secret = north.reference_secret()
    assert len(secret) == 32
    assert secret not in (north.directory / "org.keystore").read_bytes()
    reopened = OrgStore.open(north.directory, "north pw")
    assert reopened.reference_secret() == secret and reopened.org == "north-trust"
    assert reopened.installed() == []


def test_init_twice_and_open_errors(north: OrgStore, tmp_path: Path):
    with pytest.raises(OrgStoreError, match="already initialised"):
        OrgStore.create(north.directory, "north-trust", "x", kdf=FAST)
    with pytest.raises(OrgStoreError, match="not an organisation directory"):
        OrgStore.open(tmp_path / "nowhere", "x")
    with pytest.raises(DecryptionError):
        OrgStore.open(north.directory, "wrong pw")


@pytest.mark.parametrize("kem", list(Kem))
def test_grant_install_and_rotate(custodian: Keystore, north: OrgStore, kem: Kem):
    grant = grant_key(custodian, "somerset-health", _public(north), kem=kem)
    assert grant.org_fingerprint == north.fingerprint
    installed = north.install_blob(grant.blob)
    assert (installed.domain, installed.version) == ("somerset-health", "v1")
    assert installed.fingerprint == grant.key_fingerprint and installed.key_id == grant.key_id
    key, version = north.domain_key("somerset-health")
    assert version == "v1" and key == custodian.read().domains["somerset-health"].current.key
    # installing again is a no-op
    assert north.install_blob(grant.blob) == installed
    rotate_domain(custodian, "somerset-health")
    (v2,) = rewrap_domain(custodian, "somerset-health", [_public(north)], kem=kem)
    north.install_blob(v2.blob)
    assert [(k.domain, k.version) for k in north.installed()] == [
        ("somerset-health", "v1"),
        ("somerset-health", "v2"),
    ]
    assert north.domain_key("somerset-health")[1] == "v2"
    assert north.domain_key("somerset-health", "v1")[0] == key


def test_blob_for_another_org_is_refused_opaquely(custodian: Keystore, north: OrgStore, tmp_path):
    south = OrgStore.create(tmp_path / "south", "south-council", "south pw", kdf=FAST)
    grant = grant_key(custodian, "somerset-health", _public(north))
    with pytest.raises(DecryptionError, match="cannot open the key blob"):
        south.install_blob(grant.blob)
    assert south.installed() == []


def test_truncated_blob_and_missing_keys(custodian: Keystore, north: OrgStore):
    grant = grant_key(custodian, "somerset-health", _public(north))
    with pytest.raises(KeystoreFormatError, match="truncated"):
        north.install_blob(grant.blob[:-3], source="x.tkey")
    with pytest.raises(OrgStoreError, match="no key for domain somerset-health is installed"):
        north.domain_key("somerset-health")
    north.install_blob(grant.blob)
    with pytest.raises(OrgStoreError, match="somerset-health v4 is not installed"):
        north.domain_key("somerset-health", "v4")


def test_a_different_key_under_an_installed_version_is_refused(tmp_path: Path, north: OrgStore):
    first = Keystore.create(tmp_path / "a", "pw", kdf=FAST)
    second = Keystore.create(tmp_path / "b", "pw", kdf=FAST)
    for store in (first, second):
        create_domain(store, "somerset-health")
    north.install_blob(grant_key(first, "somerset-health", _public(north)).blob)
    with pytest.raises(DuplicateKeyError, match="already installed with another key"):
        north.install_blob(grant_key(second, "somerset-health", _public(north)).blob)
