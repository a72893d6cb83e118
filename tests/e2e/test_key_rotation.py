"""A linkage domain moved to a new key version through the real CLIs and HTTP.

The Somerset world (two practices, the acute trust, the opt-out register) is built in a
domain of its own; then the custodian rotates the domain key, and each organisation
installs and accepts v2, tokenises its extract again and uploads it with ``--mode
rekey``. Cohort and direct-care releases are taken before, while some organisations have
moved, and after the switch: they are equal, person ids are the same, and no v1 token is
left in Redis.
"""

from __future__ import annotations

import csv
import json
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

import pytest

from broker.store.linkage_store import LinkageStore
from broker.store.rotation_store import active_scope
from keys.batch import BatchReader
from tests.support.governance_terms import governance_toml
from tests.support.somerset_world import Org, Somerset, build_somerset, run


@pytest.fixture(scope="module")
def world(broker_server, tmp_path_factory) -> Somerset:
    return build_somerset(broker_server, tmp_path_factory.mktemp("rotation"), persons=300)


def _agreements(world: Somerset) -> tuple[str, str]:
    today = datetime.now(UTC).date()
    start, end = today - timedelta(days=1), today + timedelta(days=90)
    gp = world.orgs[_practices(world)[0]]
    trust = world.orgs["hospital"]
    datasets = f"""
[[datasets]]
org = "{gp.name}"
name = "{gp.dataset}"
fields = ["LTC_COUNT"]

[[datasets]]
org = "{trust.name}"
name = "{trust.dataset}"
fields = ["AE_ATTENDANCES_12M"]
"""
    cohort = f"""
title = "Emergency care use and long-term conditions"
purpose = "To describe emergency care use by number of long-term conditions."
legal_basis = "Section 251 of the NHS Act 2006"
kind = "research_record_level"
researchers = ["{world.researcher}"]
start = {start}
end = {end}
{governance_toml(start=start, end=end)}{datasets}"""
    direct = f"""
title = "Finding patients at risk of emergency admission"
purpose = "So that the practice can offer its patients at risk a care review."
legal_basis = "UK GDPR Art 6(1)(e) with Art 9(2)(h)"
kind = "direct_care"
organisations = ["{gp.name}"]
start = {start}
end = {end}
{governance_toml(start=start, end=end)}{datasets}"""
    return world.create_agreement(cohort), world.create_agreement(direct)


def _practices(world: Somerset) -> list[str]:
    return sorted(k for k in world.orgs if k.startswith("gp_"))


def _rows(path: Path) -> list[tuple[str, ...]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return sorted(tuple(row.values()) for row in csv.DictReader(handle))


def _releases(world: Somerset, agreements: tuple[str, str], out: Path) -> tuple[list, list]:
    """The cohort (sorted rows) and the first practice's direct-care return."""
    cohort, direct = agreements
    out.mkdir()
    world.sdk(world.researcher_credential, "cohort", "--agreement", cohort,
              "--out", str(out / "cohort.csv"))  # fmt: skip
    gp = world.orgs[_practices(world)[0]]
    world.sdk(gp.credential, "linked", "--agreement", direct, "--dir", str(gp.directory),
              "--out", str(out / "linked.csv"))  # fmt: skip
    return _rows(out / "cohort.csv"), _rows(out / "linked.csv")


def _move(
    world: Somerset, org: Org, blob_dir: Path, *, drop_last: bool = False
) -> subprocess.CompletedProcess[str]:
    """The organisation installs and accepts v2, tokenises again, uploads ``--mode rekey``
    (with ``drop_last``, an extract short of its last record)."""
    blob = blob_dir / f"{org.name}-v2.tkey"
    if not blob.exists():
        keystore = str(world.root / "custodian.keystore")
        run(["tessera-keys", "grant", world.domain, "--version", "v2", "--org", org.name,
             "--public-key", str(org.directory / "public-key.json"), "--out", str(blob),
             "--keystore", keystore], env=world.env(), cwd=world.root)  # fmt: skip
        world.sdk(None, "install-key", str(blob), "--dir", str(org.directory))
        world.sdk(None, "keys", "--dir", str(org.directory), "--accept", "v2")
    data = world.root / "data"
    extract = data / f"{org.source}.csv"
    if drop_last:
        raw = extract.read_bytes().rstrip(b"\r\n").rsplit(b"\n", 1)[0] + b"\n"
        extract = blob_dir / f"{org.source}-short.csv"
        extract.write_bytes(raw)
    batch = blob_dir / f"{org.name}-v2{'-short' if drop_last else ''}.tsb"
    world.sdk(None, "tokenise", str(extract),
              "--mapping", str(data / f"mapping_{org.source}.toml"), "--dir", str(org.directory),
              "--domain", world.domain, "--dataset", org.dataset, "--out", str(batch),
              "--no-progress")  # fmt: skip
    return world.sdk(
        org.credential, "upload", str(batch), "--mode", "rekey", "--no-progress",
        check=not drop_last,
    )  # fmt: skip


def _report(world: Somerset) -> dict:
    result = run(["tessera-broker", "report", "--json"], env=world.broker.admin_env(),
                 cwd=world.root)  # fmt: skip
    return next(d for d in json.loads(result.stdout)["domains"] if d["domain"] == world.domain)


def _v1_tokens(world: Somerset) -> set[bytes]:
    linkage = LinkageStore(world.broker.runtime.store.redis, scope=world.domain)
    tokens: set[bytes] = set()
    for entry in linkage.datasets().values():
        for chunk in linkage.iter_dataset_records(entry.id):
            tokens.update(t for r in chunk for t in r.tokens if t is not None)
    return tokens


def _redis_holds_any(world: Somerset, tokens: set[bytes]) -> bool:
    """Whether any hash, string or list value in Redis holds one of ``tokens``."""
    redis = world.broker.runtime.store.redis
    for key in redis.scan_iter(match="ts:*", count=1000):
        kind = redis.type(key)
        values: list[bytes | None]
        if kind == b"hash":
            values = list(cast(dict[bytes, bytes], redis.hgetall(key)).values())
        elif kind == b"string":
            values = [cast(bytes | None, redis.get(key))]
        elif kind == b"list":
            values = list(cast(list[bytes], redis.lrange(key, 0, -1)))
        else:
            continue
        blob = b"".join(v for v in values if v)
        if any(token in blob for token in tokens):
            return True
    return False


def test_a_domain_moves_to_v2_with_persons_and_releases_unchanged(world, tmp_path):
    agreements = _agreements(world)
    before = _releases(world, agreements, tmp_path / "before")
    persons = world.broker_persons()
    assert before[0] and before[1]
    old_tokens = _v1_tokens(world)
    assert old_tokens and _redis_holds_any(world, old_tokens)

    # Custodian: rotate; v2 is current, v1 is kept.
    keystore = str(world.root / "custodian.keystore")
    run(["tessera-keys", "domain", "rotate", world.domain, "--keystore", keystore],
        env=world.env(), cwd=world.root)  # fmt: skip

    # The trust moves first. An extract short of one record is refused, in one line.
    trust = world.orgs["hospital"]
    refused = _move(world, trust, tmp_path, drop_last=True)
    assert refused.returncode == 14 and "references differ" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert _report(world)["rotation"] is None
    # The whole extract: the broker holds its v2 tokens aside.
    moving = _move(world, trust, tmp_path)
    assert "linked" in moving.stdout and "holds these tokens aside" in moving.stderr
    text = run(["tessera-broker", "report"], env=world.broker.admin_env(), cwd=world.root)
    moved = f"key rotation         v1 -> v2: building, 1 of {len(world.orgs)} datasets moved"
    assert moved in text.stdout
    progress = _report(world)["rotation"]
    assert progress["state"] == "building" and progress["datasets_moved"] == 1
    assert progress["datasets_total"] == len(world.orgs)
    assert active_scope(world.broker.runtime.store, world.domain) == world.domain
    assert _releases(world, agreements, tmp_path / "during") == before
    assert world.broker_persons() == persons

    # Then every other organisation; the last move switches the domain to v2.
    others = [k for k in world.orgs if k != "hospital"]
    for key in others:
        _move(world, world.orgs[key], tmp_path)
    deadline = time.monotonic() + 60
    while _report(world)["rotation"]["state"] != "done":
        assert time.monotonic() < deadline, "the switch did not finish"
        time.sleep(0.2)
    progress = _report(world)["rotation"]
    assert progress["datasets_moved"] == progress["datasets_total"] == len(world.orgs)

    store = world.broker.runtime.store
    assert active_scope(store, world.domain) == f"{world.domain}@v2"
    # Person ids unchanged, releases uninterrupted and equal.
    assert world.broker_persons() == persons
    assert _releases(world, agreements, tmp_path / "after") == before
    # No v1 token is left anywhere in Redis.
    assert not _redis_holds_any(world, old_tokens)
    # Every dataset is now declared under v2.
    listed = world.sdk(world.orgs["hospital"].credential, "dataset", "list").stdout
    assert "v2" in listed and "v1" not in listed
    # Nothing the rotation printed or logged holds a credential, reference or token.
    text = "\n".join(world.outputs) + world.broker.log_text()
    for org in world.orgs.values():
        assert org.credential not in text
        for chunk in BatchReader(tmp_path / f"{org.name}-v2.tsb").chunks():
            values = [*chunk.refs, *(t for row in chunk.tokens for t in row if t is not None)]
            assert not any(v.hex() in text or v.hex().upper() in text for v in values)
    assert not any(token.hex() in text for token in old_tokens)
