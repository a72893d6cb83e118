"""The README's key ceremony, run as a new user would, and every error it can meet.

Each error must be one line on stderr with a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from client_sdk.orgstore import OrgStore
from keys.keystore import Keystore, list_domains
from keys.wrapping import BlobHeader, parse_blob_header
from tests.key_ceremony import (
    CUSTODIAN_PASSPHRASE,
    ORG_PASSPHRASE,
    Ceremony,
    readme_ceremony_block,
    shared_ceremony,
)

pytestmark = pytest.mark.xdist_group("key-ceremony")

OPAQUE_BLOB = "cannot open the key blob: wrong passphrase or key, or the file was altered"
OPAQUE_KEYSTORE = "cannot open the keystore: wrong passphrase or key, or the file was altered"


@pytest.fixture(scope="module")
def ceremony() -> Ceremony:
    return shared_ceremony()


@pytest.fixture
def scratch(ceremony: Ceremony, tmp_path: Path) -> Ceremony:
    """A copy of the finished ceremony to break things in."""
    target = tmp_path / "ceremony"
    shutil.copytree(ceremony.directory, target)
    return Ceremony(target)


def _fails(ceremony: Ceremony, command: str, code: int, message: str, **env: str) -> str:
    result = ceremony.run(command, check=False, **env)
    err = result.stderr.strip()
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "\n" not in err and "Traceback" not in err, err
    assert message in err, err
    return err


def test_readme_block_covers_the_whole_ceremony():
    block = readme_ceremony_block()
    for step in (
        "tessera-keys init",
        "tessera-keys domain create",
        "tessera-sdk init --org north-trust",
        "tessera-sdk init --org south-council",
        "tessera-keys grant",
        "tessera-sdk install-key",
        "tessera-keys domain rotate",
        "--version v2",
        "tessera-sdk keys",
    ):
        assert step in block
    assert "PASSPHRASE=" not in block  # passphrases never appear in commands


def test_readme_ceremony_runs_and_leaves_the_expected_state(ceremony: Ceremony):
    out = "".join(ceremony.outputs)
    assert "created keystore custodian.keystore" in out
    assert "fingerprint (read it out to the custodian):" in out
    custodian = Keystore.open(ceremony.directory / "custodian.keystore", CUSTODIAN_PASSPHRASE)
    (domain,) = list_domains(custodian)
    assert [(v.version, v.status) for v in domain.versions] == [
        ("v1", "retired"),
        ("v2", "current"),
    ]
    for org in ("north-trust", "south-council"):
        store = OrgStore.open(ceremony.directory / org, ORG_PASSPHRASE)
        assert store.fingerprint in out
        assert [(k.version, k.fingerprint) for k in store.installed()] == [
            (v.version, v.fingerprint) for v in domain.versions
        ]
        key, version = store.domain_key("somerset-health")
        assert version == "v2" and key == domain.current.key
    listing = ceremony.run("tessera-sdk keys --dir north-trust").stdout
    assert "somerset-health" in listing and "v2" in listing


def test_keystore_env_var_replaces_the_option(scratch: Ceremony):
    result = scratch.run("tessera-keys domain list", TESSERA_KEYS_KEYSTORE="custodian.keystore")
    assert "somerset-health" in result.stdout and "current" in result.stdout


def test_wrong_passphrases(scratch: Ceremony):
    _fails(
        scratch,
        "tessera-keys domain list --keystore custodian.keystore",
        3,
        OPAQUE_KEYSTORE,
        TESSERA_KEYS_PASSPHRASE="not the passphrase",
    )
    _fails(
        scratch,
        "tessera-sdk keys --dir north-trust",
        3,
        OPAQUE_KEYSTORE,
        TESSERA_SDK_PASSPHRASE="not the passphrase",
    )


def test_no_passphrase_and_no_terminal(scratch: Ceremony):
    result = scratch.run(
        "tessera-keys domain list --keystore custodian.keystore < /dev/null",
        check=False,
        TESSERA_KEYS_PASSPHRASE="",
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "set TESSERA_KEYS_PASSPHRASE or run on a terminal" in result.stderr


def test_truncated_and_tampered_keystores(scratch: Ceremony):
    path = scratch.directory / "custodian.keystore"
    data = path.read_bytes()
    path.write_bytes(data[:20])
    _fails(
        scratch,
        "tessera-keys domain list --keystore custodian.keystore",
        3,
        "custodian.keystore: truncated keystore",
    )
    path.write_bytes(data[:-7])
    _fails(scratch, "tessera-keys domain list --keystore custodian.keystore", 3, OPAQUE_KEYSTORE)
    tampered = bytearray(data)
    tampered[60] ^= 0x20
    path.write_bytes(bytes(tampered))
    _fails(scratch, "tessera-keys domain list --keystore custodian.keystore", 3, OPAQUE_KEYSTORE)
    org = scratch.directory / "north-trust" / "org.keystore"
    org.write_bytes(org.read_bytes()[:-1])
    _fails(scratch, "tessera-sdk keys --dir north-trust", 3, OPAQUE_KEYSTORE)


def test_truncated_and_tampered_blobs(scratch: Ceremony):
    blob = scratch.directory / "north-trust-v2.tkey"
    data = blob.read_bytes()
    blob.write_bytes(data[:100])
    _fails(
        scratch,
        "tessera-sdk install-key north-trust-v2.tkey --dir north-trust",
        3,
        "north-trust-v2.tkey: truncated key blob",
    )
    tampered = bytearray(data)
    tampered[-3] ^= 0x01
    blob.write_bytes(bytes(tampered))
    _fails(scratch, "tessera-sdk install-key north-trust-v2.tkey --dir north-trust", 3, OPAQUE_BLOB)


def _relabel(path: Path, **changes: str) -> None:
    header, body = parse_blob_header(path.read_bytes())
    fields = {
        "kem": header.kem,
        "domain": header.domain,
        "version": header.version,
        "org": header.org,
        "key_id": header.key_id,
        "fingerprint": header.fingerprint,
    } | changes
    path.write_bytes(BlobHeader(**fields).pack() + body)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "change",
    [None, {"org": "south-council"}, {"domain": "other-domain"}, {"version": "v1"}],
    ids=["as-is", "org", "domain", "version"],
)
def test_a_blob_for_another_org_domain_or_version_is_refused(scratch: Ceremony, change):
    blob = scratch.directory / "north-trust-v2.tkey"
    if change is None:
        target = "south-council"
    else:
        _relabel(blob, **change)
        target = change.get("org", "north-trust")
    err = _fails(
        scratch, f"tessera-sdk install-key north-trust-v2.tkey --dir {target}", 3, OPAQUE_BLOB
    )
    assert err == f"tessera-sdk: error: {OPAQUE_BLOB}"


def test_unknown_domain_and_versions(scratch: Ceremony):
    ks = "--keystore custodian.keystore"
    _fails(scratch, f"tessera-keys domain rotate nope {ks}", 5, "no domain nope")
    grant = (
        "tessera-keys grant somerset-health --org north-trust "
        "--public-key north-trust/public-key.json --out x.tkey " + ks
    )
    _fails(scratch, grant + " --version v9", 5, "has no key version v9")
    _fails(scratch, grant + " --version v1", 5, "somerset-health v1 is retired")
    _fails(scratch, grant + " --version 2", 5, "has no key version 2")
    _fails(
        scratch,
        "tessera-keys grant nope --org north-trust "
        "--public-key north-trust/public-key.json --out x.tkey " + ks,
        5,
        "no domain nope",
    )
    assert not (scratch.directory / "x.tkey").exists()
    _fails(scratch, f"tessera-keys domain create somerset-health {ks}", 6, "already exists")


def test_grant_checks_its_inputs(scratch: Ceremony):
    ks = "--keystore custodian.keystore"
    _fails(
        scratch,
        "tessera-keys grant somerset-health --org north-trust "
        f"--public-key south-council/public-key.json --out y.tkey {ks}",
        2,
        "is the public key of organisation south-council, not north-trust",
    )
    _fails(
        scratch,
        "tessera-keys grant somerset-health --org north-trust "
        f"--public-key north-trust/public-key.json --out north-trust-v2.tkey {ks}",
        2,
        "north-trust-v2.tkey already exists",
    )
    _fails(scratch, f"tessera-keys init {ks}", 6, "a keystore already exists there")
    _fails(
        scratch,
        "tessera-sdk init --org north-trust --dir north-trust",
        13,
        "already initialised",
    )


def test_concurrent_cli_writers_lose_nothing(scratch: Ceremony):
    commands = [
        f"tessera-keys domain create region-{n} --keystore custodian.keystore" for n in range(4)
    ]
    procs = [
        subprocess.Popen(
            ["bash", "-c", command],
            cwd=scratch.directory,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for command in commands
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    listing = scratch.run("tessera-keys domain list --keystore custodian.keystore").stdout
    for n in range(4):
        assert f"region-{n} " in listing
    assert "somerset-health" in listing


def test_a_held_lock_gives_a_busy_error(scratch: Ceremony):
    store = Keystore.open(scratch.directory / "custodian.keystore", CUSTODIAN_PASSPHRASE)
    with store.transaction():
        _fails(
            scratch,
            "tessera-keys domain rotate somerset-health --keystore custodian.keystore "
            "--lock-timeout 0.2",
            4,
            "another process is using the keystore",
        )
    scratch.run("tessera-keys domain rotate somerset-health --keystore custodian.keystore")


def _env() -> dict[str, str]:
    from tests.key_ceremony import ceremony_env

    return ceremony_env()
