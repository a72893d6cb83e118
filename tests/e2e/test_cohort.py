"""A researcher's cohort and aggregates through the CLIs, on synthetic data with ground
truth: the cohort's person count matches the truth within the linkage's measured error,
opt-outs included; rows hold pseudonyms and released fields only."""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest

from keys.batch import BatchReader
from keys.spec import default_spec
from tests.support.governance_terms import governance_toml
from tests.support.somerset_world import Somerset, shared_somerset

pytestmark = pytest.mark.xdist_group("somerset")


@pytest.fixture(scope="module")
def world(broker_server, tmp_path_factory) -> Somerset:
    return shared_somerset(broker_server, tmp_path_factory.mktemp("somerset"))


def _practice(world: Somerset) -> str:
    return sorted(k for k in world.orgs if k.startswith("gp_"))[0]


def _toml(world: Somerset, kind: str, gp_fields: str, trust_fields: str) -> str:
    today = datetime.now(UTC).date()
    gp, trust = world.orgs[_practice(world)], world.orgs["hospital"]
    return f"""
title = "Emergency care use by age"
purpose = "To describe how emergency care use varies with age in Somerset."
legal_basis = "Section 251 of the NHS Act 2006"
kind = "{kind}"
researchers = ["{world.researcher}"]
start = {today - timedelta(days=1)}
end = {today + timedelta(days=90)}
{governance_toml(start=today - timedelta(days=1), end=today + timedelta(days=90))}
[[datasets]]
org = "{gp.name}"
name = "{gp.dataset}"
fields = [{gp_fields}]

[[datasets]]
org = "{trust.name}"
name = "{trust.dataset}"
fields = [{trust_fields}]
"""


def _persons_in(world: Somerset, source: str) -> set[str]:
    return {person for (ds, _), person in world.truth.items() if ds == source}


def _read(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def test_cohort_count_matches_the_truth_within_the_linkage_error(world, tmp_path):
    gp, trust = world.orgs[_practice(world)], world.orgs["hospital"]
    agreement = world.create_agreement(
        _toml(world, "research_record_level", '"AGE_BAND"', '"AE_ATTENDANCES_12M"')
    )
    out = tmp_path / "cohort.csv"
    world.sdk(world.researcher_credential, "cohort", "--agreement", agreement, "--out", str(out))
    rows = _read(out)
    opted_out = _persons_in(world, world.orgs["optout"].source)
    truth = (_persons_in(world, gp.source) & _persons_in(world, trust.source)) - opted_out
    assert opted_out & _persons_in(world, gp.source) & _persons_in(world, trust.source)
    errors = world.linkage_errors({gp.source, trust.source, world.orgs["optout"].source})
    assert abs(len(rows) - len(truth)) <= errors
    assert errors <= 0.03 * len(world.truth)
    labels = [
        f"{gp.name}/{gp.dataset}.AGE_BAND",
        f"{trust.name}/{trust.dataset}.AE_ATTENDANCES_12M",
    ]
    assert list(rows[0]) == ["pseudonym", *labels, "link_quality"]
    assert len({r["pseudonym"] for r in rows}) == len(rows)
    # Every row is a person in both datasets, linked by one of the spec's match keys.
    keys = {k.name for k in default_spec().match_keys}
    assert {r["link_quality"] for r in rows} <= keys | {"indirect"}
    # Nothing but pseudonyms and released values: no local id, no NHS number.
    text = out.read_text(encoding="utf-8")
    extract = _read(world.root / "data" / f"{gp.source}.csv")
    cells = {c for r in rows for c in r.values()}
    assert not cells & {r["PATIENT_ID"] for r in extract}
    assert not any(r["NHS_NO"] and r["NHS_NO"] in text for r in extract)
    assert "H0" not in text


def test_cohort_selection_and_parquet(world, tmp_path):
    trust = world.orgs["hospital"]
    agreement = world.create_agreement(
        _toml(world, "research_record_level", '"AGE_BAND"', '"AE_ATTENDANCES_12M"')
    )
    ae = f"{trust.name}/{trust.dataset}.AE_ATTENDANCES_12M"
    out = tmp_path / "cohort.parquet"
    world.sdk(
        world.researcher_credential, "cohort", "--agreement", agreement, "--out", str(out),
        "--format", "parquet", "--require", f"{trust.name}/{trust.dataset}",
        "--where", f"{ae} ge 3", "--select", ae,
    )  # fmt: skip
    table = pq.read_table(out)
    assert table.column_names == ["pseudonym", ae, "link_quality"]
    values = table.column(ae).to_pylist()
    assert values and all(v is not None and int(v) >= 3 for v in values)
    hospital = _read_cp1252(world.root / "data" / f"{trust.source}.csv")
    opted_out = _persons_in(world, world.orgs["optout"].source)
    truth = {
        world.truth[(trust.source, r["HOSP_NO"])]
        for r in hospital
        if int(r["AE_ATTENDANCES_12M"]) >= 3
    } - opted_out
    errors = world.linkage_errors({trust.source, world.orgs["optout"].source})
    assert abs(len(values) - len(truth)) <= errors


def _releases(world: Somerset, agreement: str) -> int:
    body = httpx.get(world.broker.url + "/register.json", timeout=30).json()
    return next(a["releases"] for a in body["agreements"] if a["agreement"] == agreement)


def test_a_predicate_that_cannot_parse_is_refused_before_any_release(world, tmp_path):
    """`ge abc` would match nobody: an empty cohort counted as a release. Refused first."""
    trust = world.orgs["hospital"]
    agreement = world.create_agreement(
        _toml(world, "research_record_level", '"AGE_BAND"', '"AE_ATTENDANCES_12M"')
    )
    ae = f"{trust.name}/{trust.dataset}.AE_ATTENDANCES_12M"
    ok = tmp_path / "ok.csv"
    world.sdk(world.researcher_credential, "cohort", "--agreement", agreement,
              "--out", str(ok), "--where", f"{ae} ge 3")  # fmt: skip
    before = _releases(world, agreement)
    assert before == 1
    for where in (f"{ae} ge abc", f"{ae} lt", f"{ae} in ,", f"{ae} gt 3 4"):
        out = tmp_path / "refused.csv"
        refused = world.sdk(world.researcher_credential, "cohort", "--agreement", agreement,
                            "--out", str(out), "--where", where, check=False)  # fmt: skip
        assert refused.returncode == 2, (where, refused.stderr)
        assert "Traceback" not in refused.stderr and where in refused.stderr
        assert not out.exists()
        if where.endswith("abc"):
            assert "ge compares with a number or a date (YYYY-MM-DD), not 'abc'" in refused.stderr
    assert _releases(world, agreement) == before


def _read_cp1252(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="cp1252", newline="") as handle:
        return list(csv.DictReader(handle))


def test_aggregate_through_the_cli_is_suppressed(world, tmp_path):
    gp, trust = world.orgs[_practice(world)], world.orgs["hospital"]
    agreement = world.create_agreement(
        _toml(world, "research_aggregate", '"AGE_BAND"', '"EMERGENCY_ADMISSIONS_12M"')
    )
    out = tmp_path / "counts.csv"
    age = f"{gp.name}/{gp.dataset}.AGE_BAND"
    adm = f"{trust.name}/{trust.dataset}.EMERGENCY_ADMISSIONS_12M"
    done = world.sdk(world.researcher_credential, "aggregate", "--agreement", agreement,
                     "--by", age, "--by", adm, "--out", str(out))  # fmt: skip
    assert "rule: counts from 1 to 9 suppressed, others exact" in done.stderr
    rows = _read(out)
    assert list(rows[0]) == [age, adm, "count", "suppressed"]
    published = [int(r["count"]) for r in rows if r["suppressed"] != "yes"]
    assert all(n == 0 or n >= 10 for n in published)
    assert any(r["suppressed"] == "yes" and r["count"] == "" for r in rows)
    total = next(r for r in rows if r[age] == "(all)" and r[adm] == "(all)")
    assert int(total["count"]) > 0
    # A cohort under an aggregate agreement is refused.
    refused = world.sdk(world.researcher_credential, "cohort", "--agreement", agreement,
                        "--out", str(tmp_path / "no.csv"), check=False)  # fmt: skip
    assert refused.returncode == 14 and "wrong_agreement_kind" in refused.stderr


def test_aggregate_through_the_cli_names_its_sdc_profile_and_rule(world, tmp_path):
    gp = world.orgs[_practice(world)]
    toml = _toml(world, "research_aggregate", '"AGE_BAND"', '"EMERGENCY_ADMISSIONS_12M"')
    agreement = world.create_agreement('sdc_profile = "nhse-hes"\n' + toml)
    out = tmp_path / "hes.csv"
    done = world.sdk(world.researcher_credential, "aggregate", "--agreement", agreement,
                     "--by", f"{gp.name}/{gp.dataset}.AGE_BAND", "--out", str(out))  # fmt: skip
    assert "rule (nhse-hes): NHS England HES/ECDS: 0 shown as 0, 1-7 suppressed" in done.stderr
    published = [int(r["count"]) for r in _read(out) if r["suppressed"] != "yes"]
    assert published and all(n % 5 == 0 for n in published)


def test_revoked_by_the_operator_releases_nothing(world, tmp_path):
    agreement = world.create_agreement(
        _toml(world, "research_record_level", '"AGE_BAND"', '"AE_ATTENDANCES_12M"')
    )
    world.admin("agreement", "revoke", agreement)
    assert f"{agreement}\trevoked" in world.admin("agreement", "list").stdout
    refused = world.sdk(world.researcher_credential, "cohort", "--agreement", agreement,
                        "--out", str(tmp_path / "no.csv"), check=False)  # fmt: skip
    assert refused.returncode == 14 and "agreement_not_active" in refused.stderr


def test_no_credential_or_nhs_number_in_any_output_or_log(world):
    outputs = "\n".join(world.outputs) + world.broker.log_text()
    credentials = [o.credential for o in world.orgs.values()] + [world.researcher_credential]
    assert not any(c in outputs for c in credentials)
    numbers = set()
    for org in world.orgs.values():
        if org.source.startswith("gp_"):
            numbers |= {r["NHS_NO"] for r in _read(world.root / "data" / f"{org.source}.csv")}
    numbers.discard("")
    assert numbers and not any(n in outputs for n in numbers)


def test_tokenise_binds_each_batch_to_its_organisation(world):
    """Each batch `tessera-sdk tokenise` wrote names the organisation directory's org."""
    for org in world.orgs.values():
        manifest = BatchReader(world.root / f"{org.name}.tsb").manifest
        assert (manifest.org, manifest.dataset) == (org.name, org.dataset)
