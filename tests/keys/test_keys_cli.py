"""tessera-keys and tessera-sdk key commands in-process: each error is one line and a code.

The e2e test runs the same commands as subprocesses; here the keystores use cheap Argon2id
costs (made through the Python API) so every error path stays fast. A pseudo-terminal test
checks that ``init`` asks for its passphrase twice.
"""

from __future__ import annotations

import dataclasses
import os
import pty
import select
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from client_sdk.cli import cli as sdk_cli
from client_sdk.orgstore import OrgStore
from keys.cli import cli as keys_cli
from keys.cliutil import run_cli
from keys.keystore import KdfParams, Keystore, create_domain
from keys.rotation import custodian_identity, new_custodian_contents
from keys.wrapping import parse_blob_header

FAST = KdfParams(memory_cost=64, iterations=1, lanes=1)
CUSTODIAN_PW = "test-only custodian pw"
ORG_PW = "test-only organisation pw"
OPAQUE_KEYSTORE = "cannot open the keystore: wrong passphrase or key, or the file was altered"


@dataclass
class World:
    root: Path
    capsys: pytest.CaptureFixture[str]
    custodian: str

    @property
    def ks(self) -> str:
        return str(self.root / "custodian.keystore")

    def keys(self, *args: str) -> tuple[int, str, str]:
        code = run_cli(keys_cli, "tessera-keys", list(args))
        captured = self.capsys.readouterr()
        return code, captured.out, captured.err

    def sdk(self, *args: str) -> tuple[int, str, str]:
        code = run_cli(sdk_cli, "tessera-sdk", list(args))
        captured = self.capsys.readouterr()
        return code, captured.out, captured.err

    def grant(self, org: str, out: str, *extra: str) -> tuple[int, str, str]:
        public = str(self.root / org / "public-key.json")
        return self.keys(
            "grant", "somerset-health", "--org", org, "--public-key", public,
            "--out", str(self.root / out), "--keystore", self.ks, *extra,
        )  # fmt: skip


def _one_line(result: tuple[int, str, str], code: int, message: str, prog: str) -> None:
    got_code, _, err = result
    assert got_code == code, result
    assert err.count("\n") == 1 and err.startswith(f"{prog}: error: "), err
    assert message in err, err


@pytest.fixture
def world(tmp_path: Path, capsys, monkeypatch) -> World:
    monkeypatch.setenv("TESSERA_KEYS_PASSPHRASE", CUSTODIAN_PW)
    monkeypatch.setenv("TESSERA_SDK_PASSPHRASE", ORG_PW)
    monkeypatch.delenv("TESSERA_KEYS_KEYSTORE", raising=False)
    store = Keystore.create(
        tmp_path / "custodian.keystore", CUSTODIAN_PW, contents=new_custodian_contents(), kdf=FAST
    )
    create_domain(store, "somerset-health")
    custodian = custodian_identity(store)
    for org in ("north-trust", "south-council"):
        OrgStore.create(tmp_path / org, org, ORG_PW, custodian=custodian, kdf=FAST)
    return World(tmp_path, capsys, custodian)


def test_grant_install_rotate_list(world: World):
    code, out, _ = world.grant("north-trust", "n1.tkey")
    assert code == 0 and "granted domain somerset-health v1" in out
    code, out, _ = world.sdk(
        "install-key", str(world.root / "n1.tkey"), "--dir", str(world.root / "north-trust")
    )
    assert code == 0 and "installed domain somerset-health v1" in out
    code, out, _ = world.keys("domain", "rotate", "somerset-health", "--keystore", world.ks)
    assert code == 0 and "v2 is current" in out
    code, out, _ = world.grant("south-council", "s2.tkey", "--kem", "x25519")
    assert code == 0 and "somerset-health v2" in out and "(x25519)" in out
    assert f"signed by custodian {world.custodian}" in out
    world.grant("north-trust", "n2.tkey")
    north = str(world.root / "north-trust")
    code, out, _ = world.sdk("install-key", str(world.root / "n2.tkey"), "--dir", north)
    assert code == 0 and "v2 waits to be accepted" in out and "--accept v2" in out
    code, out, _ = world.sdk("keys", "--dir", north)
    rows = [line.split()[:3] for line in out.splitlines()[3:]]
    assert rows == [["somerset-health", "v1", "in"], ["somerset-health", "v2", "waiting"]]
    assert f"key custodian: {world.custodian}" in out
    code, out, _ = world.sdk("keys", "--dir", north, "--accept", "v2")
    assert code == 0 and "accepted domain somerset-health v2" in out
    assert [line.split()[:3] for line in out.splitlines()[4:]] == [
        ["somerset-health", "v1", "kept"],
        ["somerset-health", "v2", "in"],
    ]
    code, out, _ = world.keys("domain", "retire", "somerset-health", "v1", "--keystore", world.ks)
    assert code == 0 and "retired domain somerset-health v1" in out
    code, out, _ = world.keys("domain", "list", "--keystore", world.ks)
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["DOMAIN", "VERSION", "STATUS"]
    assert [line.split()[:3] for line in lines[1:]] == [
        ["somerset-health", "v1", "retired"],
        ["somerset-health", "v2", "current"],
    ]
    code, out, _ = world.sdk("keys", "--dir", str(world.root / "north-trust"))
    assert code == 0 and "somerset-health" in out and "v1" in out
    code, out, _ = world.keys("fingerprint", str(world.root / "north-trust" / "public-key.json"))
    assert code == 0 and out.startswith("north-trust ")


def test_empty_listings(world: World, tmp_path: Path):
    Keystore.create(tmp_path / "empty.keystore", CUSTODIAN_PW, kdf=FAST)
    code, out, _ = world.keys("domain", "list", "--keystore", str(tmp_path / "empty.keystore"))
    assert code == 0 and "no domains yet" in out
    code, out, _ = world.sdk("keys", "--dir", str(world.root / "north-trust"))
    assert code == 0 and "no domain keys installed yet" in out


def test_wrong_passphrases(world: World, monkeypatch):
    monkeypatch.setenv("TESSERA_KEYS_PASSPHRASE", "wrong passphrase!")
    monkeypatch.setenv("TESSERA_SDK_PASSPHRASE", "wrong passphrase!")
    _one_line(
        world.keys("domain", "list", "--keystore", world.ks), 3, OPAQUE_KEYSTORE, "tessera-keys"
    )
    _one_line(
        world.sdk("keys", "--dir", str(world.root / "north-trust")),
        3,
        OPAQUE_KEYSTORE,
        "tessera-sdk",
    )


def test_damaged_keystores(world: World):
    path = world.root / "custodian.keystore"
    data = path.read_bytes()
    for damaged, message in (
        (data[:10], "truncated keystore"),
        (data[:-1], OPAQUE_KEYSTORE),
        (data[:55] + bytes([data[55] ^ 4]) + data[56:], OPAQUE_KEYSTORE),
        (b"hello world" * 10, "not a Tessera keystore"),
    ):
        path.write_bytes(damaged)
        _one_line(world.keys("domain", "list", "--keystore", world.ks), 3, message, "tessera-keys")
    _one_line(
        world.keys("domain", "list", "--keystore", str(world.root / "nothing")),
        3,
        "no keystore there",
        "tessera-keys",
    )


def test_damaged_and_misdirected_blobs(world: World):
    world.grant("north-trust", "n1.tkey")
    blob = world.root / "n1.tkey"
    data = blob.read_bytes()
    north, south = str(world.root / "north-trust"), str(world.root / "south-council")
    _one_line(
        world.sdk("install-key", str(blob), "--dir", south),
        9,
        "granted to another organisation, not to south-council",
        "tessera-sdk",
    )
    header, body = parse_blob_header(data)
    for change in ({"domain": "other"}, {"version": "v2"}, {"org": "south-council"}):
        relabelled = dataclasses.replace(header, **change)  # type: ignore[arg-type]
        blob.write_bytes(relabelled.pack() + body + data[-64:])
        target = south if "org" in change else north
        _one_line(
            world.sdk("install-key", str(blob), "--dir", target),
            9,
            "the custodian's signature does not verify",
            "tessera-sdk",
        )
    blob.write_bytes(data[:-20])
    _one_line(
        world.sdk("install-key", str(blob), "--dir", north), 3, "truncated key blob", "tessera-sdk"
    )
    blob.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    _one_line(
        world.sdk("install-key", str(blob), "--dir", north), 9, "does not verify", "tessera-sdk"
    )


def test_pinning_the_custodian(world: World, tmp_path: Path):
    code, out, _ = world.keys("identity", "--keystore", world.ks)
    assert code == 0 and out == f"{world.custodian}\n"
    world.grant("north-trust", "n1.tkey")
    east = str(tmp_path / "east")
    code, out, _ = world.sdk("init", "--org", "north-trust", "--dir", east)
    assert code == 0 and "no key custodian pinned yet" in out
    # east has the org name but other keys; make it a grant of its own
    public = str(tmp_path / "east" / "public-key.json")
    world.keys(
        "grant", "somerset-health", "--org", "north-trust", "--public-key", public,
        "--out", str(tmp_path / "e1.tkey"), "--keystore", world.ks,
    )  # fmt: skip
    e1 = str(tmp_path / "e1.tkey")
    _one_line(
        world.sdk("install-key", e1, "--dir", east), 9, "no key custodian is pinned", "tessera-sdk"
    )
    _one_line(
        world.sdk("install-key", e1, "--dir", east, "--custodian", "ABCD"),
        2,
        "20 letters and digits",
        "tessera-sdk",
    )
    wrong = "AAAA-BBBB-CCCC-DDDD-EEEE"
    _one_line(
        world.sdk("install-key", e1, "--dir", east, "--custodian", wrong),
        9,
        f"not signed by the key custodian this organisation pinned ({wrong})",
        "tessera-sdk",
    )
    _one_line(
        world.sdk("install-key", str(world.root / "n1.tkey"), "--dir", east),
        9,
        "no key custodian is pinned",
        "tessera-sdk",
    )
    code, out, _ = world.sdk("keys", "--dir", east, "--custodian", world.custodian.lower())
    assert code == 0 and f"pinned key custodian {world.custodian}" in out
    _one_line(
        world.sdk("install-key", str(world.root / "n1.tkey"), "--dir", east),
        9,
        "wrapped to other public keys of north-trust",
        "tessera-sdk",
    )
    code, out, _ = world.sdk("install-key", e1, "--dir", east)
    assert code == 0 and f"signed by custodian {world.custodian}" in out
    _one_line(
        world.sdk("keys", "--dir", east, "--custodian", wrong),
        9,
        "already pins key custodian",
        "tessera-sdk",
    )


def test_identity_of_a_keystore_made_before_signed_grants(world: World, tmp_path: Path):
    old = tmp_path / "old.keystore"
    create_domain(Keystore.create(old, CUSTODIAN_PW, kdf=FAST), "somerset-health")
    _one_line(
        world.keys("identity", "--keystore", str(old)),
        5,
        "no custodian identity key yet",
        "tessera-keys",
    )
    public = str(world.root / "north-trust" / "public-key.json")
    _one_line(
        world.keys(
            "grant",
            "somerset-health",
            "--org",
            "north-trust",
            "--public-key",
            public,
            "--out",
            str(tmp_path / "o.tkey"),
            "--keystore",
            str(old),
        ),  # fmt: skip
        5,
        "tessera-keys identity --create",
        "tessera-keys",
    )
    code, first, _ = world.keys("identity", "--create", "--keystore", str(old))
    assert code == 0
    code, again, _ = world.keys("identity", "--create", "--keystore", str(old))
    assert again == first != f"{world.custodian}\n"


def test_unknown_domains_and_versions(world: World):
    ks = ("--keystore", world.ks)
    _one_line(world.keys("domain", "rotate", "nope", *ks), 5, "no domain nope", "tessera-keys")
    _one_line(
        world.keys("domain", "retire", "somerset-health", "v3", *ks),
        5,
        "no key version v3",
        "tessera-keys",
    )
    _one_line(
        world.grant("north-trust", "x.tkey", "--version", "v8"),
        5,
        "no key version v8",
        "tessera-keys",
    )
    _one_line(
        world.keys("domain", "retire", "somerset-health", "v1", *ks),
        2,
        "rotate before retiring",
        "tessera-keys",
    )
    _one_line(
        world.keys("domain", "create", "somerset-health", *ks), 6, "already exists", "tessera-keys"
    )
    _one_line(
        world.keys("domain", "create", "no spaces", *ks), 2, "invalid domain name", "tessera-keys"
    )
    _one_line(
        world.sdk(
            "install-key",
            str(world.root / "custodian.keystore"),
            "--dir",
            str(world.root / "nowhere"),
        ),
        13,
        "not an organisation directory",
        "tessera-sdk",
    )


def test_init_checks(world: World, tmp_path: Path, monkeypatch):
    _one_line(world.keys("init", "--keystore", world.ks), 6, "already exists", "tessera-keys")
    _one_line(
        world.keys("init", "--keystore", str(tmp_path / "no" / "such" / "dir" / "k")),
        2,
        "cannot use the keystore file",
        "tessera-keys",
    )
    monkeypatch.setenv("TESSERA_KEYS_PASSPHRASE", "short")
    monkeypatch.setenv("TESSERA_SDK_PASSPHRASE", "short")
    _one_line(
        world.keys("init", "--keystore", str(tmp_path / "k2")),
        2,
        "at least 12 characters",
        "tessera-keys",
    )
    assert not (tmp_path / "k2").exists()
    _one_line(
        world.sdk("init", "--org", "x", "--dir", str(tmp_path / "x")),
        2,
        "at least 12 characters",
        "tessera-sdk",
    )
    monkeypatch.setenv("TESSERA_SDK_PASSPHRASE", ORG_PW)
    _one_line(
        world.sdk("init", "--org", "bad org", "--dir", str(tmp_path / "y")),
        2,
        "invalid organisation name",
        "tessera-sdk",
    )


def test_grant_refuses_mismatched_org_overwrite_and_bad_public_key(world: World):
    public = str(world.root / "south-council" / "public-key.json")
    _one_line(
        world.keys(
            "grant",
            "somerset-health",
            "--org",
            "north-trust",
            "--public-key",
            public,
            "--out",
            str(world.root / "z.tkey"),
            "--keystore",
            world.ks,
        ),  # fmt: skip
        2,
        "is the public key of organisation south-council, not north-trust",
        "tessera-keys",
    )
    world.grant("north-trust", "n1.tkey")
    _one_line(
        world.grant("north-trust", "n1.tkey"),
        2,
        "already exists: choose another --out",
        "tessera-keys",
    )
    _one_line(
        world.grant("north-trust", "missing/dir.tkey"),
        2,
        "cannot write the key blob",
        "tessera-keys",
    )
    (world.root / "north-trust" / "public-key.json").write_text('{"format": "nope"}')
    _one_line(
        world.grant("north-trust", "n2.tkey"),
        3,
        "not a valid Tessera organisation public key",
        "tessera-keys",
    )


def test_keystore_env_var(world: World, monkeypatch):
    monkeypatch.setenv("TESSERA_KEYS_KEYSTORE", world.ks)
    code, out, _ = world.keys("domain", "list")
    assert code == 0 and "somerset-health" in out


def _pty_run(argv: list[str], answers: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run ``argv`` on a pseudo-terminal of its own session, answering each hidden prompt.

    click writes the prompt text, then getpass turns echo off (discarding pending input) and
    writes one space: an answer is sent only once the prompt ends with ``": "``.
    """
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        argv, stdin=follower, stdout=follower, stderr=follower, env=env, start_new_session=True
    )
    os.close(follower)
    seen = b""
    pending = list(answers)
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(leader, 1024)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                seen += chunk
                if pending and seen.endswith(b": "):
                    os.write(leader, pending.pop(0).encode() + b"\n")
                    seen += b"\n"
            elif proc.poll() is not None:
                break
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(leader)
    return code, seen.decode(errors="replace")


def test_init_prompts_twice_on_a_terminal_and_hides_the_passphrase(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TESSERA_")}
    script = str(Path(sys.executable).parent / "tessera-keys")
    path = tmp_path / "tty.keystore"
    code, transcript = _pty_run(
        [script, "init", "--keystore", str(path)],
        ["a long test-only passphrase", "a long test-only passphrase"],
        env,
    )
    assert code == 0, transcript
    assert transcript.count("New keystore passphrase") == 1
    assert "Repeat for confirmation" in transcript
    assert "a long test-only passphrase" not in transcript
    Keystore.open(path, "a long test-only passphrase")


def test_passphrase_change(world: World, monkeypatch):
    monkeypatch.setenv("TESSERA_KEYS_NEW_PASSPHRASE", "short")
    _one_line(world.keys("passphrase", "--keystore", world.ks), 2, "at least 12", "tessera-keys")
    monkeypatch.setenv("TESSERA_KEYS_NEW_PASSPHRASE", "another test-only passphrase")
    code, out, _ = world.keys("passphrase", "--keystore", world.ks)
    assert code == 0 and "changed the passphrase" in out
    _one_line(
        world.keys("domain", "list", "--keystore", world.ks), 3, OPAQUE_KEYSTORE, "tessera-keys"
    )
    monkeypatch.setenv("TESSERA_KEYS_PASSPHRASE", "another test-only passphrase")
    code, out, _ = world.keys("domain", "list", "--keystore", world.ks)
    assert code == 0 and "somerset-health" in out
