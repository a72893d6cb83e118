"""A small tokenising world for tests: a custodian, organisations with a granted key, data.

Shared by tests/client_sdk/ and tests/privacy/.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from client_sdk.cli import cli
from client_sdk.orgstore import OrgStore
from client_sdk.tokenise import TokeniseParams
from keys.cliutil import run_cli
from keys.derive import DomainKey
from keys.keystore import KdfParams, Keystore, create_domain
from keys.rotation import custodian_identity, grant_key, new_custodian_contents
from keys.spec import default_spec
from keys.wrapping import Kem, OrgPublicKey

FAST = KdfParams(memory_cost=64, iterations=1, lanes=1)
DOMAIN = "test-health"
PASSPHRASE = "org test passphrase"


def fixed_params(dataset: str, payload_columns: tuple[str, ...] = ()) -> TokeniseParams:
    """Tokenising parameters under fixed test keys: the default spec, ``DOMAIN``, ``v1``."""
    return TokeniseParams(
        spec=default_spec(),
        domain_key=DomainKey(b"\x11" * 32),
        domain=DOMAIN,
        key_version="v1",
        reference_secret=b"\x22" * 32,
        dataset=dataset,
        payload_columns=payload_columns,
    )


@dataclass(frozen=True)
class Org:
    """An initialised organisation directory with the domain key installed."""

    name: str
    directory: Path


def make_orgs(root: Path, names: list[str]) -> dict[str, Org]:
    """A custodian with domain ``DOMAIN`` and one organisation per name, each granted v1."""
    custodian = Keystore.create(
        root / "custodian.keystore", "custodian pw", contents=new_custodian_contents(), kdf=FAST
    )
    create_domain(custodian, DOMAIN)
    pinned = custodian_identity(custodian)
    orgs: dict[str, Org] = {}
    for name in names:
        store = OrgStore.create(root / name, name, PASSPHRASE, custodian=pinned, kdf=FAST)
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
