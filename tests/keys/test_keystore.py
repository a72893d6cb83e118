"""The encrypted keystore: round trips, opaque failures, atomic locked writes across processes."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keys.errors import (
    DecryptionError,
    DuplicateKeyError,
    KeyManagementError,
    KeystoreBusyError,
    KeystoreFormatError,
    UnknownKeyError,
)
from keys.keystore import (
    DEFAULT_KDF,
    HEADER_BYTES,
    Domain,
    KdfParams,
    Keystore,
    KeystoreContents,
    KeystoreKind,
    ServiceSecrets,
    create_domain,
    get_key_version,
    list_domains,
    new_key_version,
    open_service_secrets,
    seal_contents,
    unseal_contents,
)
from keys.rotation import retire_version, rotate_domain

FAST = KdfParams(memory_cost=64, iterations=1, lanes=1)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def keystore(tmp_path: Path) -> Keystore:
    return Keystore.create(tmp_path / "custodian.keystore", "correct horse", kdf=FAST)


def test_create_open_round_trip_with_mode_0600(keystore: Keystore):
    first = create_domain(keystore, "somerset-health")
    assert stat.S_IMODE(keystore.path.stat().st_mode) == 0o600
    reopened = Keystore.open(keystore.path, "correct horse")
    assert get_key_version(reopened, "somerset-health") == first
    assert first.version == "v1" and first.status == "current" and len(first.key or b"") == 32
    assert first.key_id.startswith("kid-") and first.key is not None
    assert first.key.hex() not in first.key_id
    # no temporary file is left behind
    assert sorted(p.name for p in keystore.path.parent.iterdir()) == [
        "custodian.keystore",
        "custodian.keystore.lock",
    ]


def test_default_kdf_follows_rfc9106_and_is_recorded_in_the_header(tmp_path: Path):
    assert DEFAULT_KDF == KdfParams(memory_cost=65536, iterations=3, lanes=4)
    path = tmp_path / "k"
    Keystore.create(path, "pw", kdf=FAST)
    data = path.read_bytes()
    assert data[:8] == b"TESSERAK" and data[8] == 1 and data[9] == KeystoreKind.CUSTODIAN.value
    assert int.from_bytes(data[12:16], "big") == FAST.memory_cost


def test_wrong_passphrase_is_opaque(keystore: Keystore):
    with pytest.raises(DecryptionError) as caught:
        Keystore.open(keystore.path, "wrong")
    assert str(caught.value) == (
        "cannot open the keystore: wrong passphrase or key, or the file was altered"
    )


@pytest.mark.parametrize(
    "offset",
    [15, 24, 40, HEADER_BYTES, -1],
    ids=["kdf-cost", "salt", "nonce", "ciphertext", "tag"],
)
def test_any_tampered_byte_fails_decryption(keystore: Keystore, offset: int):
    create_domain(keystore, "d")
    data = bytearray(keystore.path.read_bytes())
    data[offset] ^= 0x01
    keystore.path.write_bytes(bytes(data))
    with pytest.raises(DecryptionError):
        Keystore.open(keystore.path, "correct horse")


def test_truncated_and_foreign_files_are_format_errors(keystore: Keystore, tmp_path: Path):
    data = keystore.path.read_bytes()
    short = tmp_path / "short"
    short.write_bytes(data[:30])
    with pytest.raises(KeystoreFormatError, match="truncated keystore"):
        Keystore.open(short, "correct horse")
    cut = tmp_path / "cut"
    cut.write_bytes(data[:-5])
    with pytest.raises(DecryptionError):
        Keystore.open(cut, "correct horse")
    foreign = tmp_path / "foreign"
    foreign.write_bytes(b"PK\x03\x04" + bytes(100))
    with pytest.raises(KeystoreFormatError, match="not a Tessera keystore"):
        Keystore.open(foreign, "correct horse")
    newer = tmp_path / "newer"
    newer.write_bytes(data[:8] + b"\x09" + data[9:])
    with pytest.raises(KeystoreFormatError, match="format version 9 is not supported"):
        Keystore.open(newer, "correct horse")
    with pytest.raises(KeystoreFormatError, match="no keystore there"):
        Keystore.open(tmp_path / "absent", "correct horse")


def test_kind_is_checked(keystore: Keystore):
    with pytest.raises(KeystoreFormatError, match="custodian keystore, not a service"):
        Keystore.open(keystore.path, "correct horse", kind=KeystoreKind.SERVICE)


def test_create_refuses_an_existing_file_and_empty_passphrase(keystore: Keystore, tmp_path: Path):
    with pytest.raises(DuplicateKeyError, match="already exists"):
        Keystore.create(keystore.path, "other", kdf=FAST)
    with pytest.raises(KeyManagementError, match="must not be empty"):
        Keystore.create(tmp_path / "empty", "", kdf=FAST)


def test_domains_rotate_and_retire(keystore: Keystore):
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    v1 = create_domain(keystore, "somerset-health", now=when)
    assert v1.created_at == "2026-01-02T03:04:05Z"
    v2 = rotate_domain(keystore, "somerset-health")
    (domain,) = list_domains(keystore)
    assert [(v.version, v.status) for v in domain.versions] == [("v1", "active"), ("v2", "current")]
    assert domain.current == v2 and v2.key != v1.key and v2.key_id != v1.key_id
    assert get_key_version(keystore, "somerset-health", version="v1").key == v1.key
    with pytest.raises(KeyManagementError, match="current: rotate before retiring"):
        retire_version(keystore, "somerset-health", version="v2")
    retired = retire_version(keystore, "somerset-health", version="v1")
    assert retired.key is None and retired.status == "retired"
    assert retired.key_id == v1.key_id and retired.fingerprint == v1.fingerprint
    with pytest.raises(UnknownKeyError, match="retired"):
        get_key_version(keystore, "somerset-health", version="v1").require_key("somerset-health")
    v3 = rotate_domain(keystore, "somerset-health")
    assert v3.version == "v3"


def test_unknown_and_duplicate_domains(keystore: Keystore):
    create_domain(keystore, "d")
    with pytest.raises(DuplicateKeyError, match="domain d already exists"):
        create_domain(keystore, "d")
    with pytest.raises(UnknownKeyError, match="no domain nope"):
        get_key_version(keystore, "nope")
    with pytest.raises(UnknownKeyError, match="no key version v7"):
        get_key_version(keystore, "d", version="v7")
    with pytest.raises(UnknownKeyError, match="no domain nope"):
        rotate_domain(keystore, "nope")
    with pytest.raises(KeyManagementError, match="invalid domain name"):
        create_domain(keystore, "bad name/../x")


def test_reprs_never_show_key_bytes(keystore: Keystore, tmp_path: Path):
    version = create_domain(keystore, "d")
    secrets = open_service_secrets(tmp_path / "svc", "pw", kdf=FAST)
    assert version.key is not None and version.key.hex() not in repr(version)
    assert repr(secrets) == "ServiceSecrets()"
    assert "correct horse" not in repr(keystore)


def test_failed_transaction_writes_nothing(keystore: Keystore):
    before = keystore.path.read_bytes()
    with pytest.raises(RuntimeError), keystore.transaction() as contents:
        contents.meta["x"] = "y"
        raise RuntimeError("boom")
    assert keystore.path.read_bytes() == before


def test_service_secrets_are_created_once_and_reopen(tmp_path: Path):
    path = tmp_path / "broker.tks"
    first = open_service_secrets(path, "broker pw", kdf=FAST)
    assert isinstance(first, ServiceSecrets)
    values = [first.rekey, first.pseudonym_master, first.credential, first.audit_signing_key]
    assert all(len(v) == 32 for v in values) and len(set(values)) == 4
    assert open_service_secrets(path, "broker pw") == first
    with pytest.raises(DecryptionError):
        open_service_secrets(path, "not it")


_WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from keys.keystore import Keystore, create_domain, open_service_secrets, KdfParams
    mode, path, worker = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    if mode == "domains":
        store = Keystore.open(path, "pw", lock_timeout=60)
        for i in range(8):
            create_domain(store, f"w{worker}-d{i}")
    else:
        s = open_service_secrets(path, "pw", kdf=KdfParams(64, 1, 1), lock_timeout=60)
        print(s.rekey.hex() + s.audit_signing_key.hex())
    """
)


def _run_workers(mode: str, path: Path, count: int) -> list[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, mode, str(path), str(n)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(count)
    ]
    results = [(proc, *proc.communicate(timeout=120)) for proc in procs]
    for proc, _, err in results:
        assert proc.returncode == 0, err
    return [out.strip() for _, out, _ in results]


def test_concurrent_writer_processes_lose_no_update(tmp_path: Path):
    path = tmp_path / "shared.keystore"
    Keystore.create(path, "pw", kdf=FAST)
    _run_workers("domains", path, 4)
    names = {d.name for d in list_domains(Keystore.open(path, "pw"))}
    assert names == {f"w{w}-d{i}" for w in range(4) for i in range(8)}


def test_concurrent_first_start_of_service_secrets_agrees(tmp_path: Path):
    path = tmp_path / "broker.tks"
    outputs = _run_workers("service", path, 3)
    assert len(set(outputs)) == 1
    assert open_service_secrets(path, "pw").rekey.hex() == outputs[0][:64]


def test_a_held_lock_makes_other_processes_wait_then_give_up(keystore: Keystore):
    code = (
        "import sys; from pathlib import Path; from keys.keystore import Keystore, create_domain;"
        "create_domain(Keystore.open(Path(sys.argv[1]), 'correct horse', lock_timeout=0.2), 'x')"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with keystore.transaction():
        result = subprocess.run(
            [sys.executable, "-c", code, str(keystore.path)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode != 0
    assert "KeystoreBusyError" in result.stderr
    assert "another process is using the keystore" in result.stderr
    # once released, the same write succeeds
    create_domain(keystore, "x")


def test_busy_error_in_process(keystore: Keystore):
    other = Keystore.open(keystore.path, "correct horse", lock_timeout=0)
    with keystore.transaction(), pytest.raises(KeystoreBusyError):
        create_domain(other, "y")


_names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}", fullmatch=True)


def _repeat(fill: bytes) -> Callable[[int], bytes]:
    return lambda k: fill * k


@settings(max_examples=40, deadline=None)
@given(
    secrets=st.dictionaries(_names, st.binary(max_size=64), max_size=4),
    meta=st.dictionaries(_names, st.text(max_size=30), max_size=4),
    domains=st.lists(_names, max_size=3, unique=True),
)
def test_any_contents_survive_a_seal_round_trip(secrets, meta, domains):
    contents = KeystoreContents(secrets=secrets, meta=meta)
    for n, name in enumerate(domains):
        version = new_key_version("v1", status="current", rng=_repeat(bytes([n])))
        contents.domains[name] = Domain(name=name, versions=(version,))
    data = seal_contents(contents, "pw", kind=KeystoreKind.ORG, kdf=FAST)
    assert unseal_contents(data, "pw", kind=KeystoreKind.ORG) == contents


def test_change_passphrase_keeps_contents_and_locks_out_the_old_one(keystore: Keystore):
    version = create_domain(keystore, "d")
    before = keystore.path.read_bytes()
    keystore.change_passphrase("a new passphrase")
    after = keystore.path.read_bytes()
    assert after[24:40] != before[24:40]  # fresh salt
    assert after[12:24] == before[12:24]  # same Argon2id costs
    with pytest.raises(DecryptionError):
        Keystore.open(keystore.path, "correct horse")
    reopened = Keystore.open(keystore.path, "a new passphrase")
    assert get_key_version(reopened, "d") == version
    create_domain(keystore, "e")  # the open handle keeps working
    assert {d.name for d in list_domains(reopened)} == {"d", "e"}
    with pytest.raises(KeyManagementError, match="must not be empty"):
        keystore.change_passphrase("")
