"""Golden vectors pin the keystore, public key file and wrapped-blob formats.

keys/vectors/keystore.json and keys/vectors/wrapped_key.json hold TEST-ONLY passphrases
and keys. Every byte of a keystore file is rebuilt from the vector (randomness is
injected); a blob's header, HPKE info and custodian signature are rebuilt (Ed25519 is
deterministic), and the committed blob must verify and open (HPKE draws its own
randomness inside OpenSSL, so its ciphertext cannot be rebuilt).

Changing a format is a deliberate act: regenerate with
``.venv/bin/python tests/keys/test_vectors_keys.py --regenerate`` and bump the format
version.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest

from keys import signing
from keys.derive import DomainKey, fingerprint_key
from keys.keystore import (
    Domain,
    KdfParams,
    KeystoreContents,
    KeystoreKind,
    KeyVersion,
    seal_contents,
    unseal_contents,
)
from keys.wrapping import (
    GRANT_SIGNATURE_LABEL,
    BlobHeader,
    Kem,
    OrgPrivateKeys,
    OrgPublicKey,
    custodian_fingerprint,
    parse_blob_header,
    unwrap_key,
    verify_grant,
    wrap_key,
)

VECTORS = Path(__file__).resolve().parents[2] / "keys" / "vectors"
NOTICE = (
    "TEST VECTORS ONLY. Every passphrase, key and seed in this file is public and must "
    "never protect real data. They pin the format so that a change to it is deliberate."
)


def seeded_rng(seed: str):
    """Deterministic random bytes: SHA-256(seed ‖ counter) blocks, consumed in order."""
    buffer = bytearray()
    counter = 0

    def rng(n: int) -> bytes:
        nonlocal counter
        while len(buffer) < n:
            buffer.extend(hashlib.sha256(f"{seed}/{counter}".encode()).digest())
            counter += 1
        out = bytes(buffer[:n])
        del buffer[:n]
        return out

    return rng


# --- building vectors ------------------------------------------------------------------


def _key(label: str) -> bytes:
    return hashlib.sha256(f"test-only domain key {label}".encode()).digest()


def _custodian_contents() -> KeystoreContents:
    versions = []
    for number, status in ((1, "retired"), (2, "active"), (3, "current")):
        key = DomainKey(_key(f"v{number}"))
        versions.append(
            KeyVersion(
                version=f"v{number}",
                key_id=f"kid-{number:016x}",
                fingerprint=fingerprint_key(key),
                status=status,  # type: ignore[arg-type]
                created_at=f"2026-0{number}-01T09:00:00Z",
                key=None if status == "retired" else key,
            )
        )
    return KeystoreContents(
        domains={"test-domain": Domain(name="test-domain", versions=tuple(versions))}
    )


def _service_contents() -> KeystoreContents:
    names = ("audit_signing_key", "credential", "pseudonym_master", "rekey")
    return KeystoreContents(secrets={n: _key(f"service {n}") for n in names})


def _org_contents() -> KeystoreContents:
    contents = _custodian_contents()
    private = _org_private()
    return KeystoreContents(
        domains=contents.domains,
        secrets={**private.to_secrets(), "reference": _key("reference")},
        meta={"org": "test-org"},
    )


def _contents_doc(contents: KeystoreContents) -> dict:
    return {
        "domains": {
            name: [
                {
                    "created_at": v.created_at,
                    "fingerprint": v.fingerprint,
                    "key_hex": None if v.key is None else v.key.hex(),
                    "key_id": v.key_id,
                    "status": v.status,
                    "version": v.version,
                }
                for v in d.versions
            ]
            for name, d in contents.domains.items()
        },
        "meta": contents.meta,
        "secrets_hex": {k: v.hex() for k, v in contents.secrets.items()},
    }


def _contents_from_doc(doc: dict) -> KeystoreContents:
    return KeystoreContents(
        domains={
            name: Domain(
                name=name,
                versions=tuple(
                    KeyVersion(
                        version=v["version"],
                        key_id=v["key_id"],
                        fingerprint=v["fingerprint"],
                        status=v["status"],
                        created_at=v["created_at"],
                        key=None
                        if v["key_hex"] is None
                        else DomainKey(bytes.fromhex(v["key_hex"])),
                    )
                    for v in versions
                ),
            )
            for name, versions in doc["domains"].items()
        },
        secrets={k: bytes.fromhex(v) for k, v in doc["secrets_hex"].items()},
        meta=doc["meta"],
    )


KDF = KdfParams(memory_cost=64, iterations=1, lanes=1)


def _org_private() -> OrgPrivateKeys:
    return OrgPrivateKeys.generate(rng=seeded_rng("test-only org keys"))


def build_keystore_vectors() -> dict:
    vectors = []
    for name, kind, contents in (
        ("custodian", KeystoreKind.CUSTODIAN, _custodian_contents()),
        ("service", KeystoreKind.SERVICE, _service_contents()),
        ("organisation", KeystoreKind.ORG, _org_contents()),
    ):
        passphrase = f"TEST-ONLY {name} passphrase"
        seed = f"test-only keystore {name}"
        data = seal_contents(contents, passphrase, kind=kind, kdf=KDF, rng=seeded_rng(seed))
        vectors.append(
            {
                "name": name,
                "kind": kind.name,
                "passphrase": passphrase,
                "kdf": {
                    "memory_cost": KDF.memory_cost,
                    "iterations": KDF.iterations,
                    "lanes": KDF.lanes,
                },
                "rng_seed": seed,
                "contents": _contents_doc(contents),
                "file_hex": data.hex(),
            }
        )
    return {
        "notice": NOTICE,
        "rng": "SHA-256 of '<rng_seed>/<counter>' for counter 0, 1, …, bytes consumed in order: "
        "16 of salt, then 12 of nonce",
        "vectors": vectors,
    }


def _custodian_seed() -> bytes:
    return hashlib.sha256(b"test-only custodian identity seed").digest()


def build_wrapped_vectors() -> dict:
    private = _org_private()
    public = private.public("test-org")
    key = DomainKey(_key("v2"))
    seed = _custodian_seed()
    blobs = []
    for kem in Kem:
        blob = wrap_key(
            key,
            domain="test-domain",
            version="v2",
            key_id="kid-0000000000000002",
            recipient=public,
            signing_seed=seed,
            kem=kem,
        )
        header, _ = parse_blob_header(blob)
        blobs.append(
            {
                "kem": kem.value,
                "domain": header.domain,
                "version": header.version,
                "org": header.org,
                "key_id": header.key_id,
                "fingerprint": header.fingerprint,
                "recipient_fingerprint": header.recipient_fingerprint,
                "header_hex": header.pack().hex(),
                "info_hex": header.info.hex(),
                "signature_hex": blob[-signing.SIGNATURE_BYTES :].hex(),
                "blob_hex": blob.hex(),
            }
        )
    return {
        "notice": NOTICE,
        "org_private_keys_hex": {k: v.hex() for k, v in private.to_secrets().items()},
        "org_rng_seed": "test-only org keys",
        "public_key_file": public.to_file_bytes().decode(),
        "public_key_fingerprint": public.fingerprint,
        "custodian_seed_hex": seed.hex(),
        "custodian_public_key_hex": signing.public_key_of(seed).hex(),
        "custodian_fingerprint": custodian_fingerprint(signing.public_key_of(seed)),
        "signature_input": "'tessera/v2/key-grant' || every blob byte before the signature",
        "domain_key_hex": key.hex(),
        "blobs": blobs,
    }


def _load(name: str) -> dict:
    return json.loads((VECTORS / name).read_text())


# --- tests ------------------------------------------------------------------------------

KEYSTORE = _load("keystore.json") if (VECTORS / "keystore.json").exists() else {"vectors": []}
WRAPPED = _load("wrapped_key.json") if (VECTORS / "wrapped_key.json").exists() else {}


def test_vector_files_say_they_are_test_only():
    assert "TEST VECTORS ONLY" in KEYSTORE["notice"]
    assert "TEST VECTORS ONLY" in WRAPPED["notice"]


@pytest.mark.parametrize("vector", KEYSTORE["vectors"], ids=lambda v: v["name"])
def test_keystore_file_is_rebuilt_byte_for_byte(vector):
    contents = _contents_from_doc(vector["contents"])
    kind = KeystoreKind[vector["kind"]]
    data = seal_contents(
        contents,
        vector["passphrase"],
        kind=kind,
        kdf=KdfParams(**vector["kdf"]),
        rng=seeded_rng(vector["rng_seed"]),
    )
    assert data.hex() == vector["file_hex"]


@pytest.mark.parametrize("vector", KEYSTORE["vectors"], ids=lambda v: v["name"])
def test_committed_keystore_opens_to_its_contents(vector):
    opened = unseal_contents(
        bytes.fromhex(vector["file_hex"]), vector["passphrase"], kind=KeystoreKind[vector["kind"]]
    )
    assert _contents_doc(opened) == vector["contents"]
    for versions in vector["contents"]["domains"].values():
        for v in versions:
            if v["key_hex"] is not None:
                assert fingerprint_key(bytes.fromhex(v["key_hex"])) == v["fingerprint"]


def test_public_key_file_is_rebuilt_from_the_test_keys():
    private = OrgPrivateKeys.from_secrets(
        {k: bytes.fromhex(v) for k, v in WRAPPED["org_private_keys_hex"].items()}
    )
    assert private == OrgPrivateKeys.generate(rng=seeded_rng(WRAPPED["org_rng_seed"]))
    public = private.public("test-org")
    assert public.to_file_bytes().decode() == WRAPPED["public_key_file"]
    assert public.fingerprint == WRAPPED["public_key_fingerprint"]
    parsed = OrgPublicKey.from_file_bytes(WRAPPED["public_key_file"].encode())
    assert parsed == public


@pytest.mark.parametrize("vector", WRAPPED.get("blobs", []), ids=lambda v: v["kem"])
def test_committed_blob_header_info_and_key(vector):
    private = OrgPrivateKeys.from_secrets(
        {k: bytes.fromhex(v) for k, v in WRAPPED["org_private_keys_hex"].items()}
    )
    blob = bytes.fromhex(vector["blob_hex"])
    seed = bytes.fromhex(WRAPPED["custodian_seed_hex"])
    custodian = WRAPPED["custodian_fingerprint"]
    assert signing.public_key_of(seed).hex() == WRAPPED["custodian_public_key_hex"]
    assert custodian_fingerprint(signing.public_key_of(seed)) == custodian
    header, _ = verify_grant(blob, custodian=custodian)
    expected = BlobHeader(
        kem=Kem(vector["kem"]),
        domain=vector["domain"],
        version=vector["version"],
        org=vector["org"],
        key_id=vector["key_id"],
        fingerprint=vector["fingerprint"],
        recipient_fingerprint=vector["recipient_fingerprint"],
        custodian_key=signing.public_key_of(seed),
    )
    assert header == expected
    assert expected.pack().hex() == vector["header_hex"]
    assert expected.info.hex() == vector["info_hex"]
    assert vector["recipient_fingerprint"] == WRAPPED["public_key_fingerprint"]
    signed = blob[: -signing.SIGNATURE_BYTES]
    assert signing.sign(seed, GRANT_SIGNATURE_LABEL + signed).hex() == vector["signature_hex"]
    assert blob.endswith(bytes.fromhex(vector["signature_hex"]))
    opened = unwrap_key(blob, org="test-org", private_keys=private, custodian=custodian)
    assert opened.key.hex() == WRAPPED["domain_key_hex"]
    assert (opened.domain, opened.version, opened.key_id) == ("test-domain", "v2", vector["key_id"])
    # a fresh wrap of the same key starts with the same header bytes
    fresh = wrap_key(
        DomainKey(bytes.fromhex(WRAPPED["domain_key_hex"])),
        domain="test-domain",
        version="v2",
        key_id=vector["key_id"],
        recipient=private.public("test-org"),
        signing_seed=seed,
        kem=Kem(vector["kem"]),
    )
    assert fresh.startswith(bytes.fromhex(vector["header_hex"]))
    assert len(fresh) == len(blob)


if __name__ == "__main__":
    if sys.argv[1:] != ["--regenerate"]:
        sys.exit("usage: test_vectors_keys.py --regenerate")
    for file_name, doc in (
        ("keystore.json", build_keystore_vectors()),
        ("wrapped_key.json", build_wrapped_vectors()),
    ):
        (VECTORS / file_name).write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
        print(f"wrote {VECTORS / file_name}")
