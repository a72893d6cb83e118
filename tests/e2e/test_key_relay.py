"""The wrapped-key relay through the three CLIs: an org registers its public key, the
custodian wraps a domain key to it, the operator deposits the blob, only that org fetches
and installs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.harness import unique

BIN = Path(sys.executable).parent


def run(tool, *args, env, check=True):
    result = subprocess.run(
        [str(BIN / tool), *args], env=env, capture_output=True, text=True, timeout=120
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


def test_only_the_org_a_blob_was_wrapped_for_can_fetch_it(broker_server, tmp_path):
    admin_env = broker_server.admin_env()
    orgs = {}
    for label in ("a", "b"):
        name = unique(f"gp{label}")
        credential = run("tessera-broker", "admin", "org", "add", name, env=admin_env).stdout
        env = {
            **broker_server.sdk_env(credential.strip()),
            "TESSERA_SDK_PASSPHRASE": f"org-{label}-passphrase-for-tests",
        }
        org_dir = tmp_path / label
        run("tessera-sdk", "init", "--org", name, "--dir", str(org_dir), env=env)
        if label == "a":
            run("tessera-sdk", "register-key", "--dir", str(org_dir), env=env)
        orgs[label] = (name, env, org_dir)
    name_a, env_a, dir_a = orgs["a"]
    name_b, env_b, dir_b = orgs["b"]

    public = tmp_path / "a-public.json"
    run("tessera-broker", "admin", "org", "public-key", name_a, "--out", str(public), env=admin_env)
    assert public.read_bytes() == (dir_a / "public-key.json").read_bytes()

    keys_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TESSERA_")},
        "TESSERA_KEYS_PASSPHRASE": "custodian-passphrase-for-tests",
    }
    keystore = str(tmp_path / "custodian.tks")
    domain = unique("dom")
    run("tessera-keys", "init", "--keystore", keystore, env=keys_env)
    run("tessera-keys", "domain", "create", domain, "--keystore", keystore, env=keys_env)
    blob = tmp_path / "a.blob"
    run("tessera-keys", "grant", domain, "--org", name_a, "--public-key", str(public),
        "--out", str(blob), "--keystore", keystore, env=keys_env)  # fmt: skip

    refused = run(
        "tessera-broker", "admin", "key-blob", "add", str(blob), "--org", name_b,
        env=admin_env, check=False,
    )  # fmt: skip
    assert refused.returncode != 0 and "another organisation" in refused.stderr
    run("tessera-broker", "admin", "key-blob", "add", str(blob), "--org", name_a, env=admin_env)

    fetched = run("tessera-sdk", "fetch-key", "--dir", str(dir_a), env=env_a)
    assert f"installed {domain} v1" in fetched.stdout

    nothing = run("tessera-sdk", "fetch-key", "--dir", str(dir_b), env=env_b, check=False)
    assert nothing.returncode == 14
    assert domain not in nothing.stdout + nothing.stderr
