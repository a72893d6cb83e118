"""The README's key ceremony, run as a new user would, and every error it can meet.

Each error must be one line on stderr with a non-zero exit code, never a traceback. Here a
representative error of each kind runs through the installed scripts;
tests/keys/test_keys_cli.py covers every error path in-process.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path

import pytest

from client_sdk.orgstore import OrgStore
from keys.keystore import Keystore, list_domains
from keys.rotation import custodian_identity
from keys.wrapping import parse_blob_header
from tests.support.key_ceremony import (
    CUSTODIAN_PASSPHRASE,
    ORG_PASSPHRASE,
    Ceremony,
    ceremony_env,
    readme_ceremony_block,
    shared_ceremony,
)

pytestmark = pytest.mark.xdist_group("key-ceremony")

FORGED = "the custodian's signature does not verify (altered or forged); refused"
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
        "tessera-keys identity",
        "tessera-sdk init --org north-trust",
        "tessera-sdk init --org south-council",
        '--custodian "$CUSTODIAN"',
        "tessera-keys grant",
        "tessera-sdk install-key",
        "tessera-keys domain rotate",
        "--version v2",
        "tessera-sdk keys",
        "--accept v2",
    ):
        assert step in block
    assert "PASSPHRASE=" not in block  # passphrases never appear in commands


def test_readme_ceremony_runs_and_leaves_the_expected_state(ceremony: Ceremony):
    out = "".join(ceremony.outputs)
    assert "created keystore custodian.keystore" in out
    assert "fingerprint (read it out to the custodian):" in out
    assert "custodian fingerprint (read it out to every organisation):" in out
    custodian = Keystore.open(ceremony.directory / "custodian.keystore", CUSTODIAN_PASSPHRASE)
    pinned = custodian_identity(custodian)
    assert out.count(f"pinned key custodian {pinned}") == 2
    assert "v2 waits to be accepted" in out
    (domain,) = list_domains(custodian)
    assert [(v.version, v.status) for v in domain.versions] == [
        ("v1", "retired"),
        ("v2", "current"),
    ]
    for org in ("north-trust", "south-council"):
        store = OrgStore.open(ceremony.directory / org, ORG_PASSPHRASE)
        assert store.fingerprint in out and store.custodian == pinned
        assert [(k.version, k.fingerprint) for k in store.installed()] == [
            (v.version, v.fingerprint) for v in domain.versions
        ]
        key, version = store.domain_key("somerset-health")
        assert version == "v2" and key == domain.current.key
    listing = ceremony.run("tessera-sdk keys --dir north-trust").stdout.splitlines()
    rows = [line.split()[:3] for line in listing if line.startswith("somerset-health")]
    assert rows == [["somerset-health", "v1", "kept"], ["somerset-health", "v2", "in"]]


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


def test_truncated_keystore_and_tampered_blob(scratch: Ceremony):
    path = scratch.directory / "custodian.keystore"
    path.write_bytes(path.read_bytes()[:20])
    _fails(
        scratch,
        "tessera-keys domain list --keystore custodian.keystore",
        3,
        "custodian.keystore: truncated keystore",
    )
    blob = scratch.directory / "north-trust-v2.tkey"
    tampered = bytearray(blob.read_bytes())
    tampered[-3] ^= 0x01
    blob.write_bytes(bytes(tampered))
    _fails(scratch, "tessera-sdk install-key north-trust-v2.tkey --dir north-trust", 9, FORGED)


def test_a_blob_for_another_org_or_domain_is_refused(scratch: Ceremony):
    err = _fails(
        scratch,
        "tessera-sdk install-key north-trust-v2.tkey --dir south-council",
        9,
        "granted to another organisation",
    )
    assert err == (
        "tessera-sdk: error: north-trust-v2.tkey: this key blob was granted to another "
        "organisation, not to south-council"
    )
    blob = scratch.directory / "north-trust-v2.tkey"
    data = blob.read_bytes()
    header, body = parse_blob_header(data)
    relabelled = dataclasses.replace(header, domain="other-domain")
    blob.write_bytes(relabelled.pack() + body + data[-64:])
    _fails(scratch, "tessera-sdk install-key north-trust-v2.tkey --dir north-trust", 9, FORGED)


def test_unknown_domain_and_version(scratch: Ceremony):
    ks = "--keystore custodian.keystore"
    _fails(scratch, f"tessera-keys domain rotate nope {ks}", 5, "no domain nope")
    _fails(
        scratch,
        "tessera-keys grant somerset-health --org north-trust "
        f"--public-key north-trust/public-key.json --out x.tkey --version v9 {ks}",
        5,
        "has no key version v9",
    )
    assert not (scratch.directory / "x.tkey").exists()


def test_concurrent_cli_writers_lose_nothing(scratch: Ceremony):
    commands = [
        f"tessera-keys domain create region-{n} --keystore custodian.keystore" for n in range(4)
    ]
    procs = [
        subprocess.Popen(
            ["bash", "-c", command],
            cwd=scratch.directory,
            env=ceremony_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for command in commands
    ]
    results = [(proc, *proc.communicate(timeout=120)) for proc in procs]
    for proc, _, err in results:
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


def test_tokenise_keeps_the_accepted_version_while_a_newer_one_waits(scratch: Ceremony):
    """A newly installed version is not used by default until the organisation accepts it."""
    data = Path(__file__).resolve().parents[1] / "data"
    ks = "--keystore custodian.keystore"
    fingerprint = scratch.run(f"tessera-keys identity {ks}").stdout.strip()
    scratch.run(f"tessera-sdk init --org east-council --dir east --custodian {fingerprint}")
    for version in ("v2", "v3"):
        if version == "v3":
            scratch.run(f"tessera-keys domain rotate somerset-health {ks}")
        scratch.run(
            f"tessera-keys grant somerset-health --version {version} --org east-council "
            f"--public-key east/public-key.json --out east-{version}.tkey {ks}"
        )
        scratch.run(f"tessera-sdk install-key east-{version}.tkey --dir east")
    tokenise = (
        f"tessera-sdk tokenise {data / 'messy.csv'} --mapping {data / 'messy.toml'} --dir east "
        "--domain somerset-health --dataset extract --no-progress --out"
    )
    waiting = scratch.run(f"{tokenise} before.batch")
    assert "domain somerset-health v2" in waiting.stdout
    assert "somerset-health v3 is installed but waits to be accepted" in waiting.stderr
    assert "--accept v3" in waiting.stderr
    named = scratch.run(f"{tokenise} named.batch --key-version v3")
    assert "domain somerset-health v3" in named.stdout
    scratch.run("tessera-sdk keys --dir east --accept v3")
    accepted = scratch.run(f"{tokenise} after.batch")
    assert "domain somerset-health v3" in accepted.stdout and "waits" not in accepted.stderr
