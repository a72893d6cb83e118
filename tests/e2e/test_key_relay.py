"""The wrapped-key relay through the three CLIs: an org registers its public key, the
custodian wraps a domain key to it, the operator deposits the blob, only that org fetches
and installs it — and a key the broker side made itself is refused."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

from keys.derive import DomainKey
from keys.wire import Role
from keys.wrapping import OrgPublicKey, wrap_key
from tests.support.harness import unique

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
        orgs[label] = (name, env, org_dir)
        if label == "a":
            run("tessera-sdk", "register-key", "--dir", str(org_dir), env=env)
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
    custodian = run("tessera-keys", "identity", "--keystore", keystore, env=keys_env).stdout
    for _, env, org_dir in orgs.values():
        run("tessera-sdk", "keys", "--dir", str(org_dir), "--custodian", custodian.strip(), env=env)
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


def test_a_key_planted_through_the_broker_is_refused(broker_server, tmp_path):
    """Issue 20.1: whoever holds the broker wraps a key it knows to an org's public key."""
    name, credential = broker_server.add_org(unique("gp"))
    env = {**broker_server.sdk_env(credential), "TESSERA_SDK_PASSPHRASE": "org-passphrase-tests"}
    org_dir = tmp_path / "org"
    keys_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TESSERA_")},
        "TESSERA_KEYS_PASSPHRASE": "custodian-passphrase-for-tests",
    }
    keystore = str(tmp_path / "custodian.tks")
    domain = unique("dom")
    run("tessera-keys", "init", "--keystore", keystore, env=keys_env)
    run("tessera-keys", "domain", "create", domain, "--keystore", keystore, env=keys_env)
    custodian = run("tessera-keys", "identity", "--keystore", keystore, env=keys_env).stdout
    run("tessera-sdk", "init", "--org", name, "--dir", str(org_dir), "--custodian",
        custodian.strip(), env=env)  # fmt: skip
    run("tessera-sdk", "register-key", "--dir", str(org_dir), env=env)

    admin = broker_server.add_identity(Role.ADMIN, unique("admin"))
    known = DomainKey(bytes(range(32)))  # the key the attacker wants the org to use
    with broker_server.client(admin) as http:
        public_file = http.get(f"/v1/orgs/{name}/public-key")
        assert public_file.status_code == 200
        registration = public_file.json()
        public = OrgPublicKey.from_file_bytes(base64.b64decode(registration["public_key"]))
        for version, seed in (("v1", bytes([5]) * 32), ("v2", bytes([6]) * 32)):
            planted = wrap_key(
                known,
                domain=domain,
                version=version,
                key_id=f"kid-planted{version}",
                recipient=public,
                signing_seed=seed,  # anything but the custodian's key
            )
            deposit = http.post(
                f"/v1/orgs/{name}/key-blobs",
                json={
                    "domain": domain,
                    "key_version": version,
                    "blob": base64.b64encode(planted).decode(),
                },
            )
            assert deposit.status_code == 204, deposit.text
    (tmp_path / "planted.tkey").write_bytes(planted)

    fetched = run("tessera-sdk", "fetch-key", "--dir", str(org_dir), env=env, check=False)
    err = fetched.stderr.strip()
    assert fetched.returncode == 9, (fetched.stdout, err)
    assert "\n" not in err and "Traceback" not in err
    assert f"not signed by the key custodian this organisation pinned ({custodian.strip()})" in err
    installed = run(
        "tessera-sdk", "install-key", str(tmp_path / "planted.tkey"), "--dir", str(org_dir),
        env=env, check=False,
    )  # fmt: skip
    assert installed.returncode == 9 and "not signed by the key custodian" in installed.stderr
    listing = run("tessera-sdk", "keys", "--dir", str(org_dir), env=env).stdout
    assert "no domain keys installed yet" in listing and domain not in listing

    # the custodian's own grant, deposited over the planted one, installs
    blob = tmp_path / "real.tkey"
    public_path = tmp_path / "public.json"
    public_path.write_bytes(public.to_file_bytes())
    run("tessera-keys", "grant", domain, "--org", name, "--public-key", str(public_path),
        "--out", str(blob), "--keystore", keystore, env=keys_env)  # fmt: skip
    run("tessera-broker", "admin", "key-blob", "add", str(blob), "--org", name,
        env=broker_server.admin_env())  # fmt: skip
    with broker_server.client(credential) as http:
        held = http.get("/v1/orgs/me/key-blobs").json()
    assert {(b["domain"], b["key_version"]) for b in held} == {(domain, "v1"), (domain, "v2")}
    # v2 is still the planted one, so fetch-key installs v1 and then refuses v2
    fetched = run("tessera-sdk", "fetch-key", "--dir", str(org_dir), env=env, check=False)
    assert f"installed {domain} v1" in fetched.stdout
    assert fetched.returncode == 9 and "not signed by the key custodian" in fetched.stderr
    listing = run("tessera-sdk", "keys", "--dir", str(org_dir), env=env).stdout
    assert "kid-plantedv1" not in listing and "kid-plantedv2" not in listing
