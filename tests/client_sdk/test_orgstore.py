"""The organisation side: identity, local keystore, the pinned custodian, installing and
accepting granted keys."""

from __future__ import annotations

import json
import logging
import stat
from pathlib import Path

import pytest

from client_sdk.errors import OrgStoreError
from client_sdk.orgstore import OrgStore, public_key_fingerprint
from keys.derive import DomainKey
from keys.errors import (
    DuplicateKeyError,
    GrantRefusedError,
    KeyManagementError,
    KeystoreFormatError,
    UnknownKeyError,
)
from keys.keystore import KdfParams, Keystore, KeystoreContents, create_domain
from keys.rotation import (
    custodian_identity,
    grant_key,
    new_custodian_contents,
    rewrap_domain,
    rotate_domain,
)
from keys.wrapping import Kem, OrgPublicKey, wrap_key

FAST = KdfParams(memory_cost=64, iterations=1, lanes=1)


@pytest.fixture
def custodian(tmp_path: Path) -> Keystore:
    store = Keystore.create(
        tmp_path / "custodian.keystore", "custodian pw", contents=new_custodian_contents(), kdf=FAST
    )
    create_domain(store, "somerset-health")
    return store


@pytest.fixture
def north(tmp_path: Path, custodian: Keystore) -> OrgStore:
    return OrgStore.create(
        tmp_path / "north",
        "north-trust",
        "north pw",
        custodian=custodian_identity(custodian),
        kdf=FAST,
    )


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
    with pytest.raises(KeyManagementError, match="cannot open the keystore"):
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
    assert north.install_blob(v2.blob).use == "waiting"
    assert [(k.domain, k.version, k.use) for k in north.installed()] == [
        ("somerset-health", "v1", "in use"),
        ("somerset-health", "v2", "waiting"),
    ]
    # v2 is not used until the organisation accepts it; naming it uses it
    assert north.domain_key("somerset-health") == (key, "v1")
    assert north.domain_key("somerset-health", "v2")[1] == "v2"
    assert north.waiting_versions("somerset-health") == ["v2"]
    accepted = north.accept_version("v2")
    assert (accepted.version, accepted.use) == ("v2", "in use")
    assert north.domain_key("somerset-health")[1] == "v2"
    assert north.domain_key("somerset-health", "v1")[0] == key
    assert [k.use for k in north.installed()] == ["kept", "in use"]
    assert north.waiting_versions("somerset-health") == []


def test_a_waiting_version_is_logged_when_the_default_is_taken(
    custodian: Keystore, north: OrgStore, caplog: pytest.LogCaptureFixture
):
    north.install_blob(grant_key(custodian, "somerset-health", _public(north)).blob)
    rotate_domain(custodian, "somerset-health")
    north.install_blob(grant_key(custodian, "somerset-health", _public(north)).blob)
    with caplog.at_level(logging.WARNING, logger="client_sdk.orgstore"):
        assert north.domain_key("somerset-health")[1] == "v1"
    assert "somerset-health v2 is installed but waits to be accepted" in caplog.text
    assert "--accept v2" in caplog.text


def test_accept_needs_an_installed_version_and_a_domain_when_ambiguous(
    custodian: Keystore, north: OrgStore
):
    with pytest.raises(OrgStoreError, match="v2 is not installed"):
        north.accept_version("v2")
    create_domain(custodian, "other-domain")
    for domain in ("somerset-health", "other-domain"):
        north.install_blob(grant_key(custodian, domain, _public(north)).blob)
    with pytest.raises(OrgStoreError, match="name one with --domain"):
        north.accept_version("v1")
    assert north.accept_version("v1", domain="other-domain").domain == "other-domain"
    with pytest.raises(UnknownKeyError):
        north.accept_version("2")


def test_blob_for_another_org_says_so(custodian: Keystore, north: OrgStore, tmp_path):
    south = OrgStore.create(
        tmp_path / "south",
        "south-council",
        "south pw",
        custodian=custodian_identity(custodian),
        kdf=FAST,
    )
    grant = grant_key(custodian, "somerset-health", _public(north))
    with pytest.raises(GrantRefusedError, match="granted to another organisation") as refused:
        south.install_blob(grant.blob)
    assert "passphrase" not in str(refused.value)
    assert south.installed() == []


def test_nothing_installs_without_a_pinned_custodian(custodian: Keystore, tmp_path: Path):
    east = OrgStore.create(tmp_path / "east", "east-council", "east pw", kdf=FAST)
    assert east.custodian is None
    grant = grant_key(custodian, "somerset-health", _public(east))
    with pytest.raises(GrantRefusedError, match="no key custodian is pinned"):
        east.install_blob(grant.blob)
    # pinning at the first install, with the fingerprint read out
    fingerprint = custodian_identity(custodian)
    installed = east.install_blob(grant.blob, custodian=fingerprint.lower())
    assert installed.use == "in use" and east.custodian == fingerprint
    # the pin is never replaced
    other = Keystore.create(tmp_path / "other", "pw", contents=new_custodian_contents(), kdf=FAST)
    with pytest.raises(GrantRefusedError, match="already pins key custodian"):
        east.pin_custodian(custodian_identity(other))
    assert east.pin_custodian(fingerprint) == fingerprint


def test_a_blob_made_without_the_custodian_key_is_refused(custodian: Keystore, north: OrgStore):
    """What the broker could make: the org's public key is public, the custodian key is not."""
    known = DomainKey(bytes(range(32)))  # a key the planter knows
    planted = wrap_key(
        known,
        domain="somerset-health",
        version="v2",
        key_id="kid-planted",
        recipient=_public(north),
        signing_seed=bytes(32),  # any key but the custodian's
    )
    with pytest.raises(GrantRefusedError, match="not signed by the key custodian"):
        north.install_blob(planted)
    assert north.installed() == []


def test_a_different_key_under_an_installed_version_is_refused(
    tmp_path: Path, custodian: Keystore, north: OrgStore
):
    """The same custodian identity, a domain made twice (e.g. a lost keystore restored)."""
    first = custodian
    identity = KeystoreContents(secrets=dict(custodian.read().secrets))
    second = Keystore.create(tmp_path / "b", "pw", contents=identity, kdf=FAST)
    create_domain(second, "somerset-health")
    north.install_blob(grant_key(first, "somerset-health", _public(north)).blob)
    with pytest.raises(DuplicateKeyError, match="already installed with another key"):
        north.install_blob(grant_key(second, "somerset-health", _public(north)).blob)


def test_truncated_blob_and_missing_keys(custodian: Keystore, north: OrgStore):
    grant = grant_key(custodian, "somerset-health", _public(north))
    with pytest.raises(KeystoreFormatError, match="truncated"):
        north.install_blob(grant.blob[:-3], source="x.tkey")
    with pytest.raises(OrgStoreError, match="no key for domain somerset-health is installed"):
        north.domain_key("somerset-health")
    north.install_blob(grant.blob)
    with pytest.raises(OrgStoreError, match="somerset-health v4 is not installed"):
        north.domain_key("somerset-health", "v4")


def test_a_keystore_from_before_acceptance_uses_its_oldest_version(
    custodian: Keystore, north: OrgStore
):
    for _ in range(2):
        north.install_blob(grant_key(custodian, "somerset-health", _public(north)).blob)
        rotate_domain(custodian, "somerset-health")
    with north._keystore.transaction() as contents:  # as an older release left it
        del contents.meta["accepted/somerset-health"]
    assert north.domain_key("somerset-health")[1] == "v1"
    assert north.waiting_versions("somerset-health") == ["v2"]
    assert north.install_blob(grant_key(custodian, "somerset-health", _public(north)).blob).use == (
        "waiting"
    )
    assert north._keystore.read().meta["accepted/somerset-health"] == "v1"
