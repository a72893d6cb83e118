"""Aggregates: primary and secondary suppression hold against totals, margins and
differencing of overlapping queries, under every disclosure-control profile; each profile
cell by cell against its published rule; rounding; opt-outs."""

from __future__ import annotations

import itertools
import os
import random
import subprocess
import sys
from fractions import Fraction

import pytest
from pydantic import ValidationError

from broker.disclosure import DisclosureProfile, profile_of, round_midpoint, round_nearest
from broker.release import protect_table, round_count
from keys.wire_release import AgreementTerms
from tests.support.release_world import World, ae, age_band, build_world

# Each profile as an agreement names it; "default" names none (aggregate_control applies).
PROFILES: dict[str, dict] = {
    "default": {},
    "nhse-hes": {"sdc_profile": "nhse-hes"},
    "opensafely": {"sdc_profile": "opensafely"},
    "opensafely-midpoint-6": {"sdc_profile": "opensafely", "sdc_rounding": "midpoint-6"},
    "threshold": {"sdc_profile": "threshold", "sdc_threshold": 6},
}


@pytest.fixture(scope="module")
def world(broker_server, tmp_path_factory) -> World:
    return build_world(broker_server, tmp_path_factory.mktemp("aggregate"))


def _aggregate(world: World, agreement_id: str, by: list[str]) -> dict:
    with world.broker.client(world.researcher_cred) as http:
        answer = http.post(f"/v1/agreements/{agreement_id}/aggregate", json={"by": by})
    assert answer.status_code == 200, answer.text
    return answer.json()


def _aggregate_agreement(world: World, **overrides):
    return world.agreement(
        kind="research_aggregate",
        datasets=[
            {"org": world.gp, "name": "reg", "fields": ["AGE_BAND"]},
            {"org": world.hosp, "name": "pas", "fields": ["AE"]},
        ],
        **overrides,
    )


def _entries(answer: dict, labels: list[str]) -> dict[tuple, int | None]:
    """The published entries of one answer, keyed over every label (None = margin)."""
    out: dict[tuple, int | None] = {}
    for cell in answer["cells"]:
        full = tuple(
            cell["values"][answer["by"].index(label)] if label in answer["by"] else None
            for label in labels
        )
        out[full] = cell["count"]
    return out


def _attack(published: dict[tuple, int | None], dims: int) -> dict[tuple, Fraction]:
    """What an attacker learns exactly: solve every margin equation over the unknowns.

    Independent of the broker's code: exact rational elimination over the unknowns of
    every line (margin = sum of its categories), knowns moved to the right-hand side.
    """
    unknown = sorted((c for c, n in published.items() if n is None), key=repr)
    index = {c: i for i, c in enumerate(unknown)}
    lines: dict[tuple, list[tuple]] = {}
    for cell in published:
        for k in range(dims):
            lines.setdefault((k, cell[:k] + cell[k + 1 :]), []).append(cell)
    rows: list[list[Fraction]] = []
    for (k, _), members in lines.items():
        row = [Fraction(0)] * (len(unknown) + 1)
        for cell in members:
            sign = 1 if cell[k] is None else -1
            if cell in index:
                row[index[cell]] += sign
            else:
                row[-1] -= sign * (published[cell] or 0)
        if any(row[:-1]):
            rows.append(row)
    solved: dict[tuple, Fraction] = {}
    pivot_row = 0
    pivots: list[int] = []
    for col in range(len(unknown)):
        found = next((r for r in range(pivot_row, len(rows)) if rows[r][col] != 0), None)
        if found is None:
            continue
        rows[pivot_row], rows[found] = rows[found], rows[pivot_row]
        pivot = rows[pivot_row][col]
        rows[pivot_row] = [v / pivot for v in rows[pivot_row]]
        for r in range(len(rows)):
            if r != pivot_row and rows[r][col] != 0:
                factor = rows[r][col]
                rows[r] = [a - factor * b for a, b in zip(rows[r], rows[pivot_row], strict=True)]
        pivots.append(col)
        pivot_row += 1
    for r, col in enumerate(pivots):
        if all(v == 0 for i, v in enumerate(rows[r][:-1]) if i != col):
            solved[unknown[col]] = rows[r][-1]
    return solved


def test_primary_suppression_and_exact_published_counts(world):
    agreement = _aggregate_agreement(world)
    age = f"{world.gp}/reg.AGE_BAND"
    answer = _aggregate(world, agreement.id, [age])
    truth: dict[str, int] = {}
    for i in range(60):
        band = age_band(i) if i < 50 else ""
        truth[band] = truth.get(band, 0) + 1
    cells = {cell["values"][0]: cell for cell in answer["cells"]}
    assert cells[None]["count"] == 60  # the total
    for band, n in truth.items():
        if n < 10:
            assert cells[band]["suppressed"] and cells[band]["count"] is None
        elif not cells[band]["suppressed"]:
            assert cells[band]["count"] == n
    published = [c["count"] for c in answer["cells"] if c["count"] is not None]
    assert all(n == 0 or n >= 10 for n in published)


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_no_suppressed_cell_is_recovered_by_totals_margins_or_differencing(world, profile):
    agreement = _aggregate_agreement(world, **PROFILES[profile])
    age, a_e = f"{world.gp}/reg.AGE_BAND", f"{world.hosp}/pas.AE"
    labels = [age, a_e]
    answers = [_aggregate(world, agreement.id, by) for by in ([age], [a_e], [age, a_e], [a_e, age])]
    # Every query reads one protected table: overlapping answers agree exactly.
    combined: dict[tuple, int | None] = {}
    for answer in answers:
        for cell, count in _entries(answer, labels).items():
            assert combined.get(cell, count) == count
            combined[cell] = count
    suppressed = {c for c, n in combined.items() if n is None}
    assert suppressed, "the world has small cells"
    # Totals minus published cells, margins, and every combination across queries:
    assert not (_attack(combined, 2).keys() & suppressed)
    # and the one-line differencing attack on each answer alone.
    for answer in answers:
        own = _entries(answer, answer["by"])
        assert not {c for c, n in _attack(own, len(answer["by"])).items() if own[c] is None}


def test_the_attack_does_recover_a_cell_when_only_primary_suppression_is_used():
    """The attacker in this file is strong enough: it beats primary-only suppression."""
    full: dict[tuple[str, ...], int] = {
        ("a", "x"): 3,
        ("a", "y"): 20,
        ("b", "x"): 15,
        ("b", "y"): 25,
    }
    table = protect_table(full, min_cell_size=10)
    naive = {c: (None if 0 < n < 10 else n) for c, n in table.counts.items()}
    assert _attack(naive, 2)[("a", "x")] == 3
    protected = {c: (None if c in table.suppressed else n) for c, n in table.counts.items()}
    assert not _attack(protected, 2)


def _terms(**sdc) -> AgreementTerms:
    return AgreementTerms.model_validate(
        {
            "title": "t",
            "purpose": "p",
            "legal_basis": "Section 251 of the NHS Act 2006",
            "kind": "research_aggregate",
            "datasets": [{"org": "gp-a", "name": "reg", "fields": ["AGE_BAND"]}],
            "researchers": ["res-a"],
            "start": "2026-01-01",
            "end": "2026-12-31",
            **sdc,
        }
    )


def _profile(name: str) -> DisclosureProfile:
    found = profile_of(_terms(**PROFILES[name]))
    assert found is not None
    return found


@pytest.mark.parametrize("seed", range(16))
@pytest.mark.parametrize("profile", sorted(set(PROFILES) - {"default"}))
def test_random_tables_are_protected_under_every_profile(seed, profile):
    rule = _profile(profile)
    rng = random.Random(seed)
    dims = rng.choice([1, 2, 3, 4])
    sizes = [rng.randint(2, 5 if dims < 4 else 3) for _ in range(dims)]
    full = {
        coords: rng.choice([0, 1, 2, 5, 7, 8, 9, 12, 30])
        for coords in itertools.product(*[[f"v{i}" for i in range(s)] for s in sizes])
    }
    full = {c: n for c, n in full.items() if n}
    table = protect_table(full, min_cell_size=rule.smallest_shown)
    published = {
        c: (None if c in table.suppressed else rule.published(n)) for c, n in table.counts.items()
    }
    for cell, n in table.counts.items():
        if published[cell] is not None:
            assert rule.shown(n) == published[cell]  # primary: a shown count obeys the rule
    assert not _attack(published, dims)


@pytest.mark.parametrize("seed", range(16))
def test_random_tables_are_protected(seed):
    rng = random.Random(seed)
    dims = rng.choice([1, 2, 3, 4])
    sizes = [rng.randint(2, 5 if dims < 4 else 3) for _ in range(dims)]
    full = {
        coords: rng.choice([0, 1, 2, 5, 9, 12, 30])
        for coords in itertools.product(*[[f"v{i}" for i in range(s)] for s in sizes])
    }
    full = {c: n for c, n in full.items() if n}
    table = protect_table(full, min_cell_size=10)
    published = {c: (None if c in table.suppressed else n) for c, n in table.counts.items()}
    assert all(n is None or n == 0 or n >= 10 for n in published.values())
    assert not _attack(published, dims)


def test_rounding_agreements_round_every_count(world):
    agreement = _aggregate_agreement(world, aggregate_control="round", rounding_base=5)
    answer = _aggregate(world, agreement.id, [f"{world.hosp}/pas.AE"])
    assert answer["rounding_base"] == 5
    assert all(c["count"] % 5 == 0 and not c["suppressed"] for c in answer["cells"])
    assert {c["values"][0]: c["count"] for c in answer["cells"]}[None] == 60
    assert [round_count(n, 5) for n in (0, 1, 2, 3, 7, 8, 12, 13)] == [0, 5, 5, 5, 5, 10, 10, 15]


def test_aggregate_refusals(world):
    agreement = _aggregate_agreement(world)
    with world.broker.client(world.researcher_cred) as http:
        url = f"/v1/agreements/{agreement.id}/aggregate"
        refused = http.post(url, json={"by": [f"{world.hosp}/pas.ADM"]})
        assert refused.status_code == 403 and refused.json()["code"] == "not_released"
        # No record-level cohort under an aggregate agreement.
        cohort = http.post(f"/v1/agreements/{agreement.id}/cohort", json={})
        assert cohort.status_code == 403 and cohort.json()["code"] == "wrong_agreement_kind"


def test_opt_outs_leave_the_aggregate_population(broker_server, tmp_path):
    world = build_world(broker_server, tmp_path, seed=19)
    agreement = _aggregate_agreement(world, aggregate_control="round", rounding_base=2)
    a_e = f"{world.hosp}/pas.AE"
    before = {c["values"][0]: c["count"] for c in _aggregate(world, agreement.id, [a_e])["cells"]}
    world.opt_out(list(range(50, 60)))  # ten hospital-only persons
    after = {c["values"][0]: c["count"] for c in _aggregate(world, agreement.id, [a_e])["cells"]}
    assert before[None] == 60 and after[None] == 50
    assert sum(1 for i in range(50, 60) if ae(i) == "0") == 2
    assert after["0"] == before["0"] - 2


_DIGEST = """
import hashlib, itertools, random
from broker.release import protect_table
rng = random.Random(5)
full = {c: rng.choice([1, 2, 5, 9, 12, 30]) for c in itertools.product("abcd", "xyz", "pq")}
items = list(full.items()); rng.shuffle(items)
table = protect_table(dict(items), min_cell_size=10)
print(hashlib.sha256(repr(sorted(table.suppressed, key=repr)).encode()).hexdigest())
"""


def test_suppression_is_the_same_in_every_broker_process():
    """Two workers answering two queries must withhold the same entries, whatever their
    hash seed or the order persons were read in: else one answer undoes the other."""
    digests = set()
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        result = subprocess.run(
            [sys.executable, "-c", _DIGEST], env=env, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, result.stderr
        digests.add(result.stdout.strip())
    assert len(digests) == 1


# Each profile, cell by cell, against its published rule -----------------------------------

SUPPRESSED = None
HES_NEAREST_5 = {
    0: 0, **dict.fromkeys(range(1, 8), SUPPRESSED),
    8: 10, 9: 10, 10: 10, 11: 10, 12: 10, 13: 15, 17: 15, 18: 20, 22: 20, 23: 25,
    100: 100, 102: 100, 103: 105,
}  # fmt: skip
MIDPOINT_6 = {
    0: 0, **dict.fromkeys(range(1, 8), SUPPRESSED),
    8: 9, 12: 9, 13: 15, 18: 15, 19: 21, 24: 21, 25: 27, 600: 597, 601: 603,
}  # fmt: skip
THRESHOLD_6 = {0: 0, **dict.fromkeys(range(1, 6), SUPPRESSED), 6: 6, 7: 7, 10: 10, 123: 123}


@pytest.mark.parametrize(
    ("profile", "expected"),
    [
        ("nhse-hes", HES_NEAREST_5),  # NHS England: 0 as 0, 1-7 suppressed, nearest 5
        ("opensafely", HES_NEAREST_5),  # OpenSAFELY: <= 7 redacted, then nearest 5
        ("opensafely-midpoint-6", MIDPOINT_6),  # <= 7 redacted, then midpoint 6
        ("threshold", THRESHOLD_6),
    ],
)
def test_each_profile_cell_by_cell(profile, expected):
    rule = _profile(profile)
    assert {n: rule.shown(n) for n in expected} == expected


def test_the_roundings_as_published():
    # OpenSAFELY's table for midpoint 6 (roundmid_any): 0, 1-6 -> 3, 7-12 -> 9, 13-18 -> 15
    assert [round_midpoint(n, 6) for n in range(0, 20)] == (
        [0] + [3] * 6 + [9] * 6 + [15] * 6 + [21]
    )
    # nearest multiple: an integer is never half-way between multiples of 5 (12 -> 10 and
    # 13 -> 15 are the closest calls); with an even base the half-way case goes up
    assert [round_nearest(n, 5) for n in (10, 12, 13, 15)] == [10, 10, 15, 15]
    assert [round_nearest(n, 10) for n in (14, 15, 16, 25)] == [10, 20, 20, 30]


def test_the_threshold_profile_defaults_to_the_minimum_cell_size():
    rule = profile_of(_terms(sdc_profile="threshold", min_cell_size=12))
    assert rule is not None and rule.smallest_shown == 12
    assert (rule.shown(11), rule.shown(12)) == (None, 12)
    assert profile_of(_terms()) is None


def test_profile_parameters_are_checked_all_at_once():
    with pytest.raises(ValidationError) as caught:
        _terms(sdc_threshold=5, sdc_rounding="midpoint-6", aggregate_control="round")
    text = str(caught.value)
    assert 'sdc_threshold is a parameter of sdc_profile = "threshold"' in text
    assert 'sdc_rounding is a parameter of sdc_profile = "opensafely"' in text
    with pytest.raises(ValidationError) as caught:
        _terms(sdc_profile="nhse-hes", aggregate_control="round")
    assert "sdc_profile replaces aggregate_control" in str(caught.value)
    with pytest.raises(ValidationError) as caught:
        _terms(sdc_profile="hes")
    assert "sdc_profile" in str(caught.value)


@pytest.mark.parametrize("profile", sorted(set(PROFILES) - {"default"}))
def test_an_aggregate_names_the_profile_it_applied_and_obeys_it(world, profile):
    agreement = _aggregate_agreement(world, **PROFILES[profile])
    age, a_e = f"{world.gp}/reg.AGE_BAND", f"{world.hosp}/pas.AE"
    rule = _profile(profile)
    answer = _aggregate(world, agreement.id, [age, a_e])
    assert answer["sdc_profile"] == PROFILES[profile]["sdc_profile"]
    assert answer["sdc_rule"] == rule.rule
    assert answer["min_cell_size"] == rule.smallest_shown
    shown = {rule.shown(n) for n in range(0, 61)} - {None}
    for cell in answer["cells"]:
        assert cell["suppressed"] == (cell["count"] is None)
        assert cell["count"] is None or cell["count"] in shown
    total = next(c for c in answer["cells"] if c["values"] == [None, None])
    assert total["count"] == rule.shown(60)
