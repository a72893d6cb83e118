"""Opt-outs at the source, end to end on synthetic data through the real CLIs.

A GP practice tokenises its extract with the permitted file the Check for National Data
Opt-outs service returned (some of its NHS numbers left out) and a Type 1 code on some of
its records; the hospital applies nothing. Those persons stay in the practice's
direct-care return and are absent from every research cohort and aggregate count; a batch
whose check is too old is refused for research with one line; and nothing the batch or the
broker holds lists who opted out — only each record's flag says it.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from broker.cli import cli as broker_cli
from broker.store.audit_log import audit_length, read_entries
from broker.store.linkage_store import LinkageStore
from client_sdk.cli import cli as sdk_cli
from client_sdk.local_index import LocalIndex
from client_sdk.normalise.nhs_number import check_nhs_number
from keys.batch import BatchReader
from keys.chunk import RESEARCH_RESTRICTED
from keys.cli import cli as keys_cli
from keys.derive import RecordRef, derive_pseudonym
from tessera_synth import generate
from tests.support.governance_terms import governance_toml
from tests.support.harness import BrokerProcess, unique
from tests.support.somerset_world import (
    KEYS_PASSPHRASE,
    ORG_PASSPHRASE,
    Org,
    Somerset,
    invoke,
)

TYPE1 = "827241000000103"
WITHDRAWN = "827261000000102"  # "Dissent withdrawn": not an opt-out
STALE_DAYS = 60


@dataclass
class World:
    somerset: Somerset
    restricted: set[str]
    """GP local ids whose record is research-restricted (from the inputs, not the broker)."""
    gp_rows: list[dict[str, str]]
    batches: dict[str, Path]


def _today() -> date:
    return datetime.now(UTC).date()


def _prepare_gp(data: Path, extract: Path, mapping: Path) -> tuple[list[dict[str, str]], set[str]]:
    """Add Type 1 codes to the GP extract and write its permitted file; the restricted ids."""
    with extract.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        fields = [*(reader.fieldnames or []), "OPT_OUT_CODES"]
        rows = list(reader)
    numbers: list[str | None] = []
    for i, row in enumerate(rows):
        row["OPT_OUT_CODES"] = {4: f"1234 ; {TYPE1}", 5: WITHDRAWN}.get(i % 9, "")
        checked = check_nhs_number(row["NHS_NO"])
        numbers.append(checked if isinstance(checked, str) else None)
    with extract.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    mapping.write_text(
        mapping.read_text(encoding="utf-8") + '\n[opt_out]\ntype1_column = "OPT_OUT_CODES"\n',
        encoding="utf-8",
    )
    # The service returns the numbers that may be used: every sixth is left out.
    permitted = {n for i, n in enumerate(numbers) if n is not None and i % 6 != 1}
    # As the service's .dat file: one number a line, a comma after each.
    (data / "permitted.dat").write_text("".join(f"{n},\r\n" for n in sorted(permitted)))
    restricted = {
        row["PATIENT_ID"]
        for row, number in zip(rows, numbers, strict=True)
        if number not in permitted or TYPE1 in row["OPT_OUT_CODES"]
    }
    return rows, restricted


def _build(broker: BrokerProcess, root: Path) -> World:
    data = root / "data"
    summary = generate(data, persons=260, seed=1616, practices=1, opt_out=False)
    gp_ds = next(d for d in summary.datasets if d.kind == "gp")
    hosp_ds = next(d for d in summary.datasets if d.kind == "hospital")
    gp_rows, restricted = _prepare_gp(data, gp_ds.path, gp_ds.mapping)
    world = Somerset(broker, root, unique("optout"), {})
    tag = unique("x")[2:]
    gp = world.orgs["gp"] = Org(f"gp-{tag}", "registrations", "gp", root / f"gp-{tag}")
    world.orgs["hospital"] = Org(f"trust-{tag}", "pas", "hospital", root / f"trust-{tag}")
    env: dict[str, str | None] = {
        "TESSERA_KEYS_PASSPHRASE": KEYS_PASSPHRASE,
        "TESSERA_SDK_PASSPHRASE": ORG_PASSPHRASE,
    }
    admin_env: dict[str, str | None] = {**broker.env}
    keystore = ["--keystore", str(root / "custodian.keystore")]
    log = world.outputs
    invoke(keys_cli, ["init", *keystore], env=env, log=log)
    invoke(keys_cli, ["domain", "create", world.domain, *keystore], env=env, log=log)
    custodian = invoke(keys_cli, ["identity", *keystore], env=env, log=log).strip()
    permitted = str(data / "permitted.dat")
    today = _today().isoformat()
    stale = (_today() - timedelta(days=STALE_DAYS)).isoformat()
    # (org, dataset, extract, mapping, extra tokenise options)
    plan = [
        ("gp", "registrations", gp_ds, ["--permitted", permitted, "--opt-out-checked", today]),
        ("gp", "registrations-old", gp_ds, ["--permitted", permitted, "--opt-out-checked", stale]),
        ("hospital", "pas", hosp_ds, []),
    ]
    batches: dict[str, Path] = {}
    for key in ("gp", "hospital"):
        org = world.orgs[key]
        blob = str(root / f"{org.name}.tkey")
        invoke(sdk_cli, ["init", "--org", org.name, "--dir", str(org.directory),
                         "--custodian", custodian], env=env, log=log)  # fmt: skip
        invoke(keys_cli, ["grant", world.domain, "--org", org.name, "--public-key",
                          str(org.directory / "public-key.json"), "--out", blob, *keystore],
               env=env, log=log)  # fmt: skip
        invoke(sdk_cli, ["install-key", blob, "--dir", str(org.directory)], env=env, log=log)
        org.credential = invoke(
            broker_cli, ["admin", "org", "add", org.name], env=admin_env, log=log,
            secret_stdout=True,
        ).strip()  # fmt: skip
    for key, dataset, ds, extra in plan:
        org = world.orgs[key]
        batch = root / f"{org.name}-{dataset}.tsb"
        invoke(sdk_cli, ["tokenise", str(ds.path), "--mapping", str(ds.mapping), "--dir",
                         str(org.directory), "--domain", world.domain, "--dataset", dataset,
                         "--out", str(batch), "--no-progress", *extra],
               env=env, log=log)  # fmt: skip
        with_broker = {**env, "TESSERA_SDK_TOKEN": org.credential,
                       "TESSERA_SDK_BROKER_URL": broker.url}  # fmt: skip
        declare = ["dataset", "declare", dataset, "--from-batch", str(batch)]
        invoke(sdk_cli, [*declare, "--one-record-per-person"], env=with_broker, log=log)
        invoke(sdk_cli, ["upload", str(batch), "--no-progress"], env=with_broker, log=log)
        batches[dataset] = batch
    world.researcher = unique("researcher")
    world.researcher_credential = invoke(
        broker_cli, ["admin", "researcher", "add", world.researcher], env=admin_env, log=log,
        secret_stdout=True,
    ).strip()  # fmt: skip
    assert gp.dataset == "registrations"
    return World(world, restricted, gp_rows, batches)


@pytest.fixture(scope="module")
def world(broker_server, tmp_path_factory) -> World:
    return _build(broker_server, tmp_path_factory.mktemp("source-opt-outs"))


def _agreement(
    world: World, kind: str, *, gp_dataset: str = "registrations", extra: str = ""
) -> str:
    w = world.somerset
    gp, trust = w.orgs["gp"], w.orgs["hospital"]
    today = _today()
    start, end = today - timedelta(days=1), today + timedelta(days=90)
    people = (
        f'organisations = ["{gp.name}"]'
        if kind == "direct_care"
        else f'researchers = ["{w.researcher}"]'
    )
    return w.create_agreement(f"""{extra}
title = "Emergency care and long-term conditions"
purpose = "How long-term conditions relate to emergency care."
legal_basis = "Section 251 of the NHS Act 2006"
kind = "{kind}"
{people}
start = {start}
end = {end}
{governance_toml(start=start, end=end)}
[[datasets]]
org = "{gp.name}"
name = "{gp_dataset}"
fields = ["AGE_BAND"]

[[datasets]]
org = "{trust.name}"
name = "pas"
fields = ["AE_ATTENDANCES_12M"]
""")


def _read(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def _persons(world: World) -> tuple[dict[int, set[str]], set[int]]:
    """The broker's persons (datasets each is in) and those with a restricted GP record."""
    w = world.somerset
    gp = w.orgs["gp"]
    linkage = LinkageStore(w.broker.runtime.store.redis, scope=w.domain)
    datasets: dict[int, set[str]] = {}
    gp_refs: dict[bytes, int] = {}
    for pid, records in linkage.iter_persons():
        datasets[pid] = {r.dataset for r in records}
        for r in records:
            if r.dataset == f"{gp.name}/registrations":
                gp_refs[bytes(r.ref)] = pid
    with LocalIndex.open(gp.directory, "registrations") as index:
        local = index.lookup([RecordRef(ref) for ref in gp_refs])
    restricted = {pid for ref, pid in gp_refs.items() if local[RecordRef(ref)] in world.restricted}
    return datasets, restricted


def test_the_direct_care_return_keeps_every_patient_the_research_cohort_leaves_them_out(
    world, tmp_path
):
    w = world.somerset
    gp, trust = w.orgs["gp"], w.orgs["hospital"]
    assert 10 < len(world.restricted) < len(world.gp_rows) // 2
    # Direct care: every patient of the practice, the restricted ones included.
    care = _agreement(world, "direct_care")
    linked = tmp_path / "linked.csv"
    w.sdk(gp.credential, "linked", "--agreement", care, "--dir", str(gp.directory),
          "--out", str(linked))  # fmt: skip
    returned = {r["local_id"] for r in _read(linked)}
    assert world.restricted <= returned
    assert returned == {r["PATIENT_ID"] for r in world.gp_rows}
    # Research: exactly the persons in both datasets without a restricted record.
    research = _agreement(world, "research_record_level")
    cohort = tmp_path / "cohort.csv"
    w.sdk(w.researcher_credential, "cohort", "--agreement", research, "--out", str(cohort))
    got = {r["pseudonym"] for r in _read(cohort)}
    datasets, restricted = _persons(world)
    both = {
        pid
        for pid, ds in datasets.items()
        if {f"{gp.name}/registrations", f"{trust.name}/pas"} <= ds
    }
    master = w.broker.runtime.secrets.pseudonym_master

    def pseudonym(pid: int) -> str:
        return derive_pseudonym(master, agreement_id=research, person_id=f"{w.domain}:{pid}")

    assert restricted & both, "some restricted persons are in both datasets"
    assert got == {pseudonym(pid) for pid in both - restricted}
    assert not got & {pseudonym(pid) for pid in restricted}


def test_aggregate_counts_leave_the_restricted_out_and_the_audit_counts_them(world, tmp_path):
    w = world.somerset
    gp, trust = w.orgs["gp"], w.orgs["hospital"]
    datasets, restricted = _persons(world)
    agreement_ds = {f"{gp.name}/registrations", f"{trust.name}/pas"}
    population = {pid for pid, ds in datasets.items() if ds & agreement_ds}
    totals: dict[str, int] = {}
    for apply in ("true", "false"):
        agreement = _agreement(world, "research_aggregate", extra=f"opt_outs_apply = {apply}")
        out = tmp_path / f"counts-{apply}.csv"
        age = f"{gp.name}/registrations.AGE_BAND"
        w.sdk(w.researcher_credential, "aggregate", "--agreement", agreement, "--by", age,
              "--out", str(out))  # fmt: skip
        total = next(r for r in _read(out) if r[age] == "(all)")
        totals[apply] = int(total["count"])
        store = w.broker.runtime.store
        entries = [json.loads(e) for e in read_entries(store, start=0, count=audit_length(store))]
        entry = next(e for e in reversed(entries) if e.get("agreement") == agreement)
        withheld = entry["counts"].get("research_restricted", 0)
        assert withheld == (len(restricted & population) if apply == "true" else 0)
    assert totals["true"] == len(population - restricted)
    assert totals["false"] == len(population)
    assert totals["false"] - totals["true"] == len(restricted & population) > 0


def test_a_batch_whose_check_is_too_old_is_refused_for_research_in_one_line(world, tmp_path):
    w = world.somerset
    agreement = _agreement(world, "research_record_level", gp_dataset="registrations-old")
    refused = w.sdk(w.researcher_credential, "cohort", "--agreement", agreement,
                    "--out", str(tmp_path / "no.csv"), check=False)  # fmt: skip
    assert refused.returncode != 0
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1, refused.stderr
    stale = (_today() - timedelta(days=STALE_DAYS)).isoformat()
    assert "opt_out_check_stale" in lines[0] and f"last checked on {stale}" in lines[0]
    assert "Traceback" not in refused.stderr
    assert not (tmp_path / "no.csv").exists()
    # A longer limit in the agreement releases it.
    allowed = _agreement(
        world, "research_record_level", gp_dataset="registrations-old",
        extra=f"opt_out_max_age_days = {STALE_DAYS + 1}",
    )  # fmt: skip
    w.sdk(
        w.researcher_credential, "cohort", "--agreement", allowed, "--out", str(tmp_path / "ok.csv")
    )
    assert _read(tmp_path / "ok.csv")


def test_a_bad_permitted_file_is_refused_in_one_line_and_nothing_is_written(world, tmp_path):
    w = world.somerset
    gp = w.orgs["gp"]
    bad = tmp_path / "permitted.dat"
    number = next(
        r["NHS_NO"] for r in world.gp_rows if isinstance(check_nhs_number(r["NHS_NO"]), str)
    )
    bad.write_text(f"{number},\n1234567890,\n")
    out = tmp_path / "never.tsb"
    gp_csv = next((w.root / "data").glob("gp_*.csv"))
    mapping = next((w.root / "data").glob("mapping_gp_*.toml"))
    refused = w.sdk(None, "tokenise", str(gp_csv), "--mapping", str(mapping), "--dir",
                    str(gp.directory), "--domain", w.domain, "--dataset", "registrations",
                    "--out", str(out), "--no-progress", "--permitted", str(bad),
                    check=False)  # fmt: skip
    assert refused.returncode != 0
    assert refused.stderr.strip().splitlines() == [
        f"tessera-sdk: error: {bad}, line 2: not a valid NHS number; nothing applied"
    ]
    assert "1234567890" not in refused.stderr + refused.stdout
    assert not out.exists()


def _stored_refs(world: World) -> tuple[set[bytes], set[bytes]]:
    """Every reference the broker holds in the domain: restricted ones, and the others."""
    w = world.somerset
    gp, trust = w.orgs["gp"], w.orgs["hospital"]
    linkage = LinkageStore(w.broker.runtime.store.redis, scope=w.domain)
    restricted: set[bytes] = set()
    others = {bytes(ref) for ref, _ in linkage.iter_dataset(f"{trust.name}/pas")}
    for dataset in ("registrations", "registrations-old"):
        refs = [RecordRef(bytes(ref)) for ref, _ in linkage.iter_dataset(f"{gp.name}/{dataset}")]
        with LocalIndex.open(gp.directory, dataset) as index:
            local = index.lookup(refs)
        for ref in refs:
            (restricted if local[ref] in world.restricted else others).add(bytes(ref))
    return restricted, others


def _values_of(redis, key: bytes) -> list[bytes]:
    kind = redis.type(key)
    if kind == b"string":
        return [redis.get(key)]
    if kind == b"hash":
        return [b for pair in redis.hgetall(key).items() for b in pair]
    if kind == b"set":
        return list(redis.smembers(key))
    if kind == b"zset":
        return [m for m, _ in redis.zrange(key, 0, -1, withscores=True)]
    if kind == b"list":
        return list(redis.lrange(key, 0, -1))
    if kind == b"stream":
        return [json.dumps({k.decode(): v.decode("latin-1") for k, v in fields.items()}).encode()
                for _, fields in redis.xrange(key)]  # fmt: skip
    return []


def test_nothing_on_the_broker_or_in_the_batch_lists_who_opted_out(world):
    restricted, others = _stored_refs(world)
    assert restricted and others
    redis = world.somerset.broker.runtime.store.redis
    forms = lambda refs: {r: (r, r.hex().encode()) for r in refs}  # noqa: E731
    restricted_forms, other_forms = forms(restricted), forms(others)
    for key in redis.scan_iter(count=1000):
        values = [key, *_values_of(redis, key)]
        # A key that holds a restricted reference holds others too: it stores records,
        # never a collection of the restricted ones.
        held = {r for r, f in restricted_forms.items() if any(x in v for v in values for x in f)}
        if held:
            assert any(x in v for v in values for f in other_forms.values() for x in f), key
        assert b"restricted" not in key.lower() and b"opted" not in key.lower(), key
    # The batch: all references in order and one flag each; the manifest lists none of them.
    reader = BatchReader(world.batches["registrations"])
    text = reader.manifest.model_dump_json().encode()
    assert not any(r in text or r.hex().encode() in text for r in restricted)
    assert reader.manifest.opt_out_checked == _today()
    flagged = 0
    for chunk in reader.chunks():
        assert chunk.flags is not None and len(chunk.flags) == len(chunk.refs)
        flagged += sum(1 for f in chunk.flags if f & RESEARCH_RESTRICTED)
    assert flagged == len(world.restricted)
    assert f"{flagged:,} records flagged research-restricted, opt-outs checked" in "".join(
        world.somerset.outputs
    )
    assert "restricted" not in json.dumps(reader.manifest.quality)


def test_neither_the_permitted_file_nor_a_type1_code_leaves_the_practice(world):
    numbers = [
        n.rstrip(",") for n in (world.somerset.root / "data" / "permitted.dat").read_text().split()
    ]
    assert numbers
    for dataset in ("registrations", "registrations-old"):
        reader = BatchReader(world.batches[dataset])
        seen = [reader.manifest.model_dump_json()]
        for chunk in reader.chunks():
            seen += [json.dumps(chunk.payload), repr(chunk.key_names + chunk.payload_columns)]
            seen += [bytes(r).decode("latin-1") for r in chunk.refs]
        text = "\n".join(seen)
        assert TYPE1 not in text and "OPT_OUT_CODES" not in text
        assert not any(n in text for n in numbers)
    outputs = "\n".join(world.somerset.outputs) + world.somerset.broker.log_text()
    assert not any(n in outputs for n in numbers)
    assert TYPE1 not in outputs
