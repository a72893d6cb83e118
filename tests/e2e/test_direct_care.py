"""The Somerset case through the CLIs: each practice gets exactly the linked hospital facts
of its own patients (against the ground truth, allowing only the linkage's measured
errors), then its list of patients at risk."""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from client_sdk.risk import load_rules, score_patients
from tests.support.governance_terms import governance_toml
from tests.support.somerset_world import Somerset, shared_somerset

pytestmark = pytest.mark.xdist_group("somerset")

RULES = Path(__file__).resolve().parents[2] / "client_sdk" / "data" / "risk_rules.toml"


@pytest.fixture(scope="module")
def world(broker_server, tmp_path_factory) -> Somerset:
    return shared_somerset(broker_server, tmp_path_factory.mktemp("somerset"))


def _direct_care_toml(world: Somerset, practice: str) -> str:
    today = datetime.now(UTC).date()
    gp, trust = world.orgs[practice], world.orgs["hospital"]
    return f"""
title = "Finding patients at risk of emergency admission"
purpose = "So that the practice can offer its patients at risk a care review."
legal_basis = "UK GDPR Art 6(1)(e) with Art 9(2)(h)"
kind = "direct_care"
organisations = ["{gp.name}"]
start = {today - timedelta(days=1)}
end = {today + timedelta(days=365)}
{governance_toml(start=today - timedelta(days=1), end=today + timedelta(days=365))}
[[datasets]]
org = "{gp.name}"
name = "{gp.dataset}"
fields = ["LTC_COUNT", "FRAILTY_INDEX"]

[[datasets]]
org = "{trust.name}"
name = "{trust.dataset}"
fields = ["AE_ATTENDANCES_12M", "EMERGENCY_ADMISSIONS_12M"]
"""


def _read(path: Path, encoding: str = "utf-8") -> list[dict[str, str]]:
    with path.open(encoding=encoding, newline="") as handle:
        return list(csv.DictReader(handle))


def _hospital_truth(world: Somerset) -> dict[str, tuple[str, str]]:
    """True person -> (A&E, admissions) from the hospital extract."""
    source = world.orgs["hospital"].source
    rows = _read(world.root / "data" / f"{source}.csv", "cp1252")
    out: dict[str, tuple[str, str]] = {}
    for row in rows:
        person = world.truth[(source, row["HOSP_NO"])]
        out[person] = (row["AE_ATTENDANCES_12M"], row["EMERGENCY_ADMISSIONS_12M"])
    return out


@pytest.mark.parametrize("index", [0, 1])
def test_each_practice_gets_exactly_its_own_patients_linked_facts(world, index, tmp_path):
    practice = sorted(k for k in world.orgs if k.startswith("gp_"))[index]
    gp, trust = world.orgs[practice], world.orgs["hospital"]
    agreement = world.create_agreement(_direct_care_toml(world, practice), subprocess=index == 0)
    out = tmp_path / "linked.csv"
    result = world.sdk(gp.credential, "linked", "--agreement", agreement, "--dir",
                       str(gp.directory), "--out", str(out))  # fmt: skip
    rows = _read(out)
    ae, adm = (
        f"{trust.name}/{trust.dataset}.AE_ATTENDANCES_12M",
        (f"{trust.name}/{trust.dataset}.EMERGENCY_ADMISSIONS_12M"),
    )
    # The summary tells linked patients from those with nothing linked (issue 17.5).
    with_facts = sum(1 for r in rows if r[ae] or r[adm])
    assert 0 < with_facts < len(rows)
    assert (
        f"wrote {len(rows)} patients to {out}: {with_facts} with linked facts, "
        f"{len(rows) - with_facts} with none"
    ) in result.stderr
    # Each row says how it is linked: a record with linked facts never reads `single`.
    assert all(r["link_quality"] != "single" for r in rows if r[ae] or r[adm])
    assert {r["link_quality"] for r in rows if not (r[ae] or r[adm])} <= {"single"}
    extract = {r["PATIENT_ID"]: r for r in _read(world.root / "data" / f"{gp.source}.csv")}
    # Every patient of this practice, and nobody else's.
    assert sorted(r["local_id"] for r in rows) == sorted(extract)
    assert {r["dataset"] for r in rows} == {gp.dataset}
    hospital = _hospital_truth(world)
    placed = world.broker_persons()
    hospital_by_person: dict[int, str] = {
        pid: local for (source, local), pid in placed.items() if source == trust.source
    }
    wrong = 0
    for row in rows:
        local_id = row["local_id"]
        assert row[f"{gp.name}/{gp.dataset}.LTC_COUNT"] == extract[local_id]["LTC_COUNT"]
        true_person = world.truth[(gp.source, local_id)]
        expected = hospital.get(true_person, ("", ""))
        got = (row[ae], row[adm])
        if got != expected:
            wrong += 1
            # A difference from the truth is a linkage error, never a release error: the
            # values are those of the hospital record the broker linked, or none.
            linked_hosp = hospital_by_person.get(placed[(gp.source, local_id)])
            assert linked_hosp is None or world.truth[(trust.source, linked_hosp)] != true_person
    errors = world.linkage_errors({gp.source, trust.source})
    assert wrong <= errors
    assert wrong <= 0.03 * len(rows)
    # No hospital number, no reference, no token in what the practice receives.
    text = out.read_text(encoding="utf-8")
    assert "H0" not in text
    # Then the practice's list of patients at risk, highest first.
    risk_out = tmp_path / "risk.csv"
    world.sdk(None, "risk", "--linked", str(out), "--rules", str(RULES), "--out", str(risk_out))
    ranked = _read(risk_out)
    assert ranked, "some patients are at risk"
    scores = [float(r["score"]) for r in ranked]
    assert scores == sorted(scores, reverse=True)
    assert [int(r["rank"]) for r in ranked] == list(range(1, len(ranked) + 1))
    assert {r["local_id"] for r in ranked} <= set(extract)
    rules = load_rules(RULES)
    columns = list(rows[0])
    expected_scores = {s.local_id: s.score for s in score_patients(rules, columns, rows)}
    assert {r["local_id"]: float(r["score"]) for r in ranked} == expected_scores
    assert all(s >= rules.threshold for s in scores)


def test_another_practice_and_the_trust_are_refused(world, tmp_path):
    practices = sorted(k for k in world.orgs if k.startswith("gp_"))
    agreement = world.create_agreement(_direct_care_toml(world, practices[0]))
    other = world.orgs[practices[1]]
    refused = world.sdk(
        other.credential, "linked", "--agreement", agreement, "--dir", str(other.directory),
        "--out", str(tmp_path / "x.csv"), check=False,
    )  # fmt: skip
    assert refused.returncode == 14 and "not_found_or_forbidden" in refused.stderr
    trust = world.orgs["hospital"]
    refused = world.sdk(
        trust.credential, "linked", "--agreement", agreement, "--dir", str(trust.directory),
        "--out", str(tmp_path / "y.csv"), check=False,
    )  # fmt: skip
    assert refused.returncode == 14
    assert not (tmp_path / "x.csv").exists() and not (tmp_path / "y.csv").exists()
