"""A small tokenising world for tests: a custodian, organisations with a granted key, data.

Shared by tests/client_sdk/test_tokenise_cli.py and tests/privacy/.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from client_sdk.cli import cli
from client_sdk.orgstore import OrgStore
from keys.cliutil import run_cli
from keys.keystore import KdfParams, Keystore, create_domain
from keys.rotation import grant_key
from keys.wrapping import Kem, OrgPublicKey

FAST = KdfParams(memory_cost=64, iterations=1, lanes=1)
DOMAIN = "test-health"
PASSPHRASE = "org test passphrase"


@dataclass(frozen=True)
class Org:
    """An initialised organisation directory with the domain key installed."""

    name: str
    directory: Path


def make_orgs(root: Path, names: list[str]) -> dict[str, Org]:
    """A custodian with domain ``DOMAIN`` and one organisation per name, each granted v1."""
    custodian = Keystore.create(root / "custodian.keystore", "custodian pw", kdf=FAST)
    create_domain(custodian, DOMAIN)
    orgs: dict[str, Org] = {}
    for name in names:
        store = OrgStore.create(root / name, name, PASSPHRASE, kdf=FAST)
        public = OrgPublicKey.from_file_bytes(store.public_key_path.read_bytes())
        store.install_blob(grant_key(custodian, DOMAIN, public, kem=Kem.X25519).blob)
        orgs[name] = Org(name, store.directory)
    return orgs


def tokenise(
    monkeypatch: pytest.MonkeyPatch,
    org: Org,
    data: Path,
    mapping: Path,
    out: Path,
    *,
    dataset: str,
    extra: list[str] | None = None,
) -> int:
    """Run ``tessera-sdk tokenise`` in-process; returns its exit code."""
    monkeypatch.setenv("TESSERA_SDK_PASSPHRASE", PASSPHRASE)
    args = ["tokenise", str(data), "--mapping", str(mapping), "--dir", str(org.directory)]
    args += ["--domain", DOMAIN, "--dataset", dataset, "--out", str(out), "--no-progress"]
    return run_cli(cli, "tessera-sdk", args + (extra or []))
