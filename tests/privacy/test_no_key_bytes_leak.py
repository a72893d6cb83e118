"""Claim: key material never leaves the encrypted stores.

After the README's full key ceremony (plus the same commands again with ``--debug`` for
every log line), no domain key, organisation private key or reference secret appears in
any command's output or log, or in any file but the encrypted keystores: not raw, not in
hex (either case), not in base64 (standard or URL-safe, with or without padding).
"""

from __future__ import annotations

import base64
import shutil
from pathlib import Path

import pytest

from client_sdk.orgstore import OrgStore
from keys.keystore import Keystore
from tests.support.key_ceremony import (
    CUSTODIAN_PASSPHRASE,
    ORG_PASSPHRASE,
    Ceremony,
    shared_ceremony,
)

pytestmark = pytest.mark.xdist_group("key-ceremony")

ENCRYPTED = {"custodian.keystore", "org.keystore"}


def _forms(secret: bytes) -> set[bytes]:
    forms = {secret, secret.hex().encode(), secret.hex().upper().encode()}
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        text = encode(secret)
        forms |= {text, text.rstrip(b"=")}
    # base64 of the secret inside a longer string aligns to one of three offsets
    for shift in (1, 2):
        inner = base64.b64encode(bytes(shift) + secret)[4:-4]
        forms.add(inner)
    return forms


def _secrets(ceremony: Ceremony) -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    custodian = Keystore.open(ceremony.directory / "custodian.keystore", CUSTODIAN_PASSPHRASE)
    for domain in custodian.read().domains.values():
        for v in domain.versions:
            if v.key is not None:
                found[f"{domain.name} {v.version}"] = v.key
    for org in ("north-trust", "south-council"):
        store = OrgStore.open(ceremony.directory / org, ORG_PASSPHRASE)
        found[f"{org} reference secret"] = store.reference_secret()
        for name, secret in store._keystore.read().secrets.items():
            found[f"{org} {name}"] = secret
        for installed in store.installed():
            key, _ = store.domain_key(installed.domain, installed.version)
            found[f"{org} {installed.domain} {installed.version}"] = key
    return found


def _debug_run(ceremony: Ceremony) -> None:
    ks = "--keystore custodian.keystore"
    for command in (
        f"tessera-keys --debug domain list {ks}",
        f"tessera-keys --debug domain rotate somerset-health {ks}",
        "tessera-keys --debug grant somerset-health --org north-trust "
        f"--public-key north-trust/public-key.json --out debug-v3.tkey {ks}",
        "tessera-sdk --debug install-key debug-v3.tkey --dir north-trust",
        "tessera-sdk --debug install-key debug-v3.tkey --dir north-trust",
        "tessera-sdk --debug keys --dir north-trust",
        "tessera-keys --debug fingerprint north-trust/public-key.json",
    ):
        ceremony.run(command)
    ceremony.run("tessera-sdk install-key north-trust-v2.tkey --dir south-council", check=False)
    ceremony.run(f"tessera-keys domain list {ks}", check=False, TESSERA_KEYS_PASSPHRASE="wrong")


def test_no_key_bytes_in_any_output_log_or_clear_file(tmp_path: Path):
    shared = shared_ceremony()
    ceremony = Ceremony(tmp_path / "ceremony", outputs=list(shared.outputs))
    shutil.copytree(shared.directory, ceremony.directory)
    _debug_run(ceremony)
    secrets = _secrets(ceremony)
    assert len(secrets) >= 12  # 3 domain versions, 2 orgs x 4 secrets, installed keys
    haystacks: dict[str, bytes] = {
        f"output {n}": text.encode() for n, text in enumerate(ceremony.outputs)
    }
    clear_files = [
        p for p in ceremony.directory.rglob("*") if p.is_file() and p.name not in ENCRYPTED
    ]
    assert {p.name for p in clear_files} >= {"public-key.json", "north-trust-v1.tkey"}
    for path in clear_files:
        haystacks[str(path.relative_to(ceremony.directory))] = path.read_bytes()
    assert any(b"DEBUG" in h or b"INFO" in h for h in haystacks.values()), "no log lines seen"
    leaks = [
        f"{label} in {where}"
        for label, secret in secrets.items()
        for form in _forms(secret)
        for where, haystack in haystacks.items()
        if form in haystack
    ]
    assert leaks == []


def test_the_encrypted_stores_hold_no_key_in_the_clear():
    ceremony = shared_ceremony()
    secrets = _secrets(ceremony)
    for path in ceremony.directory.rglob("*"):
        if path.name in ENCRYPTED:
            data = path.read_bytes()
            for label, secret in secrets.items():
                assert not any(form in data for form in _forms(secret)), (label, path)


def test_passphrases_never_reach_outputs():
    ceremony = shared_ceremony()
    everything = "".join(ceremony.outputs)
    assert CUSTODIAN_PASSPHRASE not in everything
    assert ORG_PASSPHRASE not in everything
