"""broker.matching: agreement vectors, EM, scores and decisions over real SDK tokens.

The records are tokenised by the SDK's tokeniser under the default UK spec, so the
evidence is what a batch carries; no broker, no Redis (the package is pure).
"""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.matching import (
    MISSING,
    Layout,
    RecordEvidence,
    ScoredPair,
    agreement,
    estimate,
    fit,
    fit_scored,
    model_threshold,
    one_to_one,
    score_pairs,
    tf_adjustment,
)
from broker.matching.score import TF_PRIOR_PAIRS
from client_sdk.record import NormalisedRecord
from client_sdk.tokenise import TokeniseParams, Tokeniser
from keys.derive import DomainKey
from keys.spec import PROBABILISTIC_SPEC_NAME, default_spec
from tests.support.evidence_world import world

GIVEN = ["OLIVER", "AMELIA", "GEORGE", "ISLA", "HARRY", "AVA", "JACK", "MIA", "NOAH", "IVY"]
FAMILY = ["SMITH", "JONES", "TAYLOR", "BROWN", "WILLIAMS", "KHAN", "PATEL", "WILSON"]


def _tokeniser() -> Tokeniser:
    return Tokeniser(
        TokeniseParams(
            spec=default_spec(PROBABILISTIC_SPEC_NAME),
            domain_key=DomainKey(bytes(range(32))),
            domain="test",
            key_version="v1",
            reference_secret=b"r" * 32,
            dataset="test",
        )
    )


def _record(local_id: str, **values: str | None) -> NormalisedRecord:
    base: dict[str, str | None] = {
        "nhs_number": None,
        "given_name": "WILLIAM",
        "given_name_key": "WILLIAM",
        "family_name": "OBRIEN",
        "date_of_birth": "1984-07-03",
        "sex": "M",
        "postcode": "BA1 1AA",
    }
    base.update(values)
    if "given_name" in values and "given_name_key" not in values:
        base["given_name_key"] = values["given_name"]
    return NormalisedRecord(line=0, local_id=local_id, **base)  # type: ignore[arg-type]


def _evidence(
    tokeniser: Tokeniser, records: list[tuple[str, NormalisedRecord]]
) -> tuple[Layout, list[RecordEvidence]]:
    out = []
    layout = None
    for number, (dataset, record) in enumerate(records):
        chunk = tokeniser.chunk_of_rows([tokeniser.row(record)])
        assert chunk.evidence is not None
        layout = layout or Layout.from_columns(chunk.evidence.block_names, chunk.evidence.columns)
        out.append(
            RecordEvidence(number, dataset, chunk.evidence.blocks[0], chunk.evidence.cells()[0])
        )
    assert layout is not None
    return layout, out


def _block(layout: Layout, name: str) -> int:
    return [b.name for b in layout.blocks].index(name)


def test_agreement_takes_the_strongest_shared_level_per_comparison() -> None:
    layout, (a, b, c, d) = _evidence(
        _tokeniser(),
        [
            ("gp", _record("1", given_name="WILLIAM", postcode="BA1 1AA")),
            ("hosp", _record("2", given_name="BILL", given_name_key="WILLIAM", postcode="BA1 1ZZ")),
            ("hosp", _record("3", given_name="WILLIAM", family_name="OBRIEN SMITH", sex=None)),
            ("hosp", _record("4", given_name="XAVIER", postcode="BS2 9QQ")),
        ],
    )
    dob = layout.blocks[_block(layout, "dob")]
    names = dob.comparisons
    ab = dict(zip(names, agreement(dob, a, b), strict=True))
    assert ab["given"] == 1  # nickname group
    assert ab["family"] == 0
    assert ab["postcode"] == 1  # same sector
    assert ab["nhs"] == MISSING  # neither has one
    ac = dict(zip(names, agreement(dob, a, c), strict=True))
    assert dob.levels[names.index("family")][ac["family"]] == "part"  # one half of two
    assert ac["sex"] == MISSING
    ad = dict(zip(names, agreement(dob, a, d), strict=True))
    assert ad["given"] == len(dob.levels[names.index("given")])  # disagrees at every level
    assert ad["postcode"] == len(dob.levels[names.index("postcode")])


def test_one_digit_off_agrees_only_within_hamming_distance_one() -> None:
    same = "9434765919"
    layout, (a, b, c) = _evidence(
        _tokeniser(),
        [
            ("gp", _record("1", nhs_number=same, date_of_birth="1984-07-03")),
            ("hosp", _record("2", nhs_number=same, date_of_birth="1984-07-08")),  # one digit off
            ("hosp", _record("3", nhs_number=same, date_of_birth="1984-07-18")),  # two digits off
        ],
    )
    nhs = layout.blocks[_block(layout, "nhs")]
    dob = nhs.comparisons.index("dob")
    assert nhs.levels[dob][agreement(nhs, a, b)[dob]] == "one_digit"
    assert nhs.levels[dob][agreement(nhs, a, c)[dob]] == "year_month"


def test_comparisons_derived_under_a_block_leave_out_the_blocks_own_field() -> None:
    layout, _ = _evidence(_tokeniser(), [("gp", _record("1"))])
    assert "dob" not in layout.blocks[_block(layout, "dob")].comparisons
    assert "nhs" not in layout.blocks[_block(layout, "nhs")].comparisons
    assert "dob" in layout.blocks[_block(layout, "names_phonetic")].comparisons


def _population(seed: int, people: int = 400) -> list[tuple[str, NormalisedRecord]]:
    """Two one-record-per-person extracts of one population; the hospital's has typos."""
    rng = random.Random(seed)
    out = []
    for i in range(people):
        given, family = rng.choice(GIVEN), rng.choice(FAMILY)
        dob = f"{rng.randint(1940, 2010)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        sex = rng.choice("MF")
        postcode = (
            f"BA{rng.randint(1, 9)} {rng.randint(1, 9)}{rng.choice('ABD')}{rng.choice('EFG')}"
        )
        out.append(
            (
                "gp",
                _record(
                    f"g{i}",
                    given_name=given,
                    family_name=family,
                    date_of_birth=dob,
                    sex=sex,
                    postcode=postcode,
                ),
            )
        )
        if rng.random() < 0.6:
            typo_given = given[:-1] + "E" if rng.random() < 0.2 else given
            out.append(
                (
                    "hosp",
                    _record(
                        f"h{i}",
                        given_name=typo_given,
                        family_name=family,
                        date_of_birth=dob,
                        sex=sex,
                        postcode=postcode,
                    ),
                )
            )
    return out


def test_em_weights_favour_agreement_and_converge() -> None:
    layout, records = _evidence(_tokeniser(), _population(1))
    model = fit(layout, records)
    dob = model.blocks[_block(layout, "dob")]
    assert dob.converged and dob.pairs > 0
    for weights in dob.comparisons:
        if weights.name == "nhs":  # no NHS numbers here: no evidence either way
            assert weights.weight(0) == pytest.approx(0.0)
            continue
        assert weights.weight(0) > 0  # exact agreement is evidence for a match
        assert weights.weight(len(weights.levels) - 1) < 0  # disagreement against
        assert sum(weights.m) == pytest.approx(1.0)
        assert sum(weights.u) == pytest.approx(1.0)


def test_scores_find_the_typo_pairs_and_not_the_strangers() -> None:
    population = _population(2)
    layout, records = _evidence(_tokeniser(), population)
    model = fit(layout, records)
    pairs = score_pairs(model, records, [])
    person = {i: population[i][1].local_id[1:] for i in range(len(population))}
    dataset_of = {r.record: r.dataset for r in records}
    threshold = model_threshold(pairs)
    links = one_to_one(pairs, dataset_of, threshold=threshold)
    true_pairs = Counter(person.values())
    right = sum(person[p.left] == person[p.right] for p in links)
    assert right >= 0.95 * sum(1 for n in true_pairs.values() if n == 2)
    assert right == len(links)


def test_score_pairs_needs_a_shared_block() -> None:
    layout, records = _evidence(
        _tokeniser(),
        [
            ("gp", _record("1", date_of_birth="1984-07-03", given_name="ANNA")),
            (
                "hosp",
                _record("2", date_of_birth="1990-01-01", given_name="ZOE", family_name="KHAN"),
            ),
        ],
    )
    assert score_pairs(fit(layout, records), records, []) == []


def test_one_to_one_takes_the_best_pair_first() -> None:
    pairs = [
        ScoredPair(1, 2, 0, (0,), 5.0, 0.97),
        ScoredPair(1, 3, 0, (0,), 9.0, 0.999),
        ScoredPair(4, 2, 0, (0,), 1.0, 0.6),
    ]
    dataset_of = {1: "gp", 2: "hosp", 3: "hosp", 4: "gp"}
    accepted = one_to_one(pairs, dataset_of, threshold=0.5)
    assert [(p.left, p.right) for p in accepted] == [(1, 3), (4, 2)]


def test_model_threshold_keeps_the_expected_false_share_below_the_target() -> None:
    pairs = [ScoredPair(i, i + 1, 0, (0,), 0.0, p) for i, p in enumerate([1.0] * 99 + [0.9, 0.6])]
    threshold = model_threshold(pairs, false_link_rate=0.001)
    assert threshold == 0.9  # 0.1 expected wrong in 100: ok; 0.5 in 101: not
    assert model_threshold([], false_link_rate=0.001) == 1.0


@settings(max_examples=25, deadline=None)
@given(st.integers(min_value=0, max_value=10_000), st.randoms(use_true_random=False))
def test_em_is_order_invariant_and_identical_evidence_scores_identically(
    seed: int, rnd: random.Random
) -> None:
    layout, records = _evidence(_tokeniser(), _population(seed, people=60))
    model = fit(layout, records)
    shuffled = list(records)
    rnd.shuffle(shuffled)
    assert fit(layout, shuffled) == model
    assert score_pairs(model, shuffled, []) == score_pairs(model, records, [])


@settings(max_examples=50, deadline=None)
@given(
    st.dictionaries(
        st.tuples(st.integers(-1, 3), st.integers(-1, 2)),
        st.integers(1, 50),
        min_size=1,
        max_size=12,
    )
)
def test_estimate_converges_to_probabilities_whatever_the_counts(
    patterns: dict[tuple[int, ...], int],
) -> None:
    layout = Layout.from_columns(
        ["b"],
        [
            (0, "given", "exact"),
            (0, "given", "nysiis"),
            (0, "given", "initial"),
            (0, "sex", "exact"),
            (0, "sex", "other"),
        ],
    ).blocks[0]
    model = estimate(layout, patterns)
    assert 0.0 < model.prior < 1.0
    for weights in model.comparisons:
        assert sum(weights.m) == pytest.approx(1.0)
        assert all(0.0 < x < 1.0 for x in (*weights.m, *weights.u))
    reordered = dict(reversed(list(patterns.items())))
    assert estimate(layout, reordered) == model


def test_fit_scored_scores_every_candidate_pair_as_score_pairs_does() -> None:
    """The engine takes its threshold from ``fit_scored``'s pairs: they must be exactly
    the pairs ``score_pairs`` gives for the same records and model."""
    records: list[RecordEvidence] = []
    layout = None
    for name, chunk in sorted(world().chunks.items()):
        evidence = chunk.evidence
        assert evidence is not None
        layout = Layout.from_columns(evidence.block_names, evidence.columns)
        for blocks, cells in zip(evidence.blocks, evidence.cells(), strict=True):
            records.append(RecordEvidence(len(records), name, blocks, cells))
    assert layout is not None
    model, pairs = fit_scored(layout, records)
    assert model == fit(layout, records)
    assert pairs and pairs == score_pairs(model, records, ())


def _dob_only(layout: Layout, records: list[RecordEvidence]) -> list[RecordEvidence]:
    """The records with only their date-of-birth block: every pair scored under that key."""
    j = _block(layout, "dob")
    return [
        RecordEvidence(
            r.record,
            r.dataset,
            tuple(t if k == j else None for k, t in enumerate(r.blocks)),
            r.cells,
        )
        for r in records
    ]


def _one_birthday(common: int) -> list[tuple[str, NormalisedRecord]]:
    """One date-of-birth block: a pair agreeing on a rare given name, one on a name that
    ``common`` more records of the block hold, and those records (other people)."""
    day = {"date_of_birth": "1961-05-17", "sex": "F", "postcode": "LS6 2AB"}
    out = [
        ("gp", _record("rare-gp", given_name="ZENOBIA", family_name="HOLT", **day)),
        ("hosp", _record("rare-h", given_name="ZENOBIA", family_name="HOLT", **day)),
        ("gp", _record("common-gp", given_name="MARY", family_name="DEAN", **day)),
        ("hosp", _record("common-h", given_name="MARY", family_name="DEAN", **day)),
    ]
    for i in range(common):
        other = {**day, "sex": "MF"[i % 2], "postcode": f"LS{i + 7} 1AB"}
        out.append(
            (
                "gp" if i % 2 else "hosp",
                _record(f"other{i}", given_name="MARY", family_name=f"X{i}", **other),
            )
        )
    return out


def _birthday_scores(common: int) -> tuple[Layout, dict[str, ScoredPair]]:
    tokeniser = _tokeniser()
    layout, population = _evidence(tokeniser, _population(3))
    model = fit(layout, population)
    block = _one_birthday(common)
    _, records = _evidence(tokeniser, block)
    records = _dob_only(layout, records)
    ids = {r.record: block[r.record][1].local_id for r in records}
    pairs = score_pairs(model, records, [])
    return layout, {f"{ids[p.left]}+{ids[p.right]}": p for p in pairs}


def test_a_rarer_exact_agreement_weighs_more_inside_a_block() -> None:
    layout, scores = _birthday_scores(common=12)
    rare, common = scores["rare-gp+rare-h"], scores["common-gp+common-h"]
    dob = layout.blocks[_block(layout, "dob")]
    given = dob.comparisons.index("given")
    assert rare.agreement == common.agreement and rare.agreement[given] == 0
    assert rare.match_weight - rare.tf_weight == pytest.approx(
        common.match_weight - common.tf_weight
    )  # the same model weights: only the term frequencies differ
    assert rare.tf_weight > common.tf_weight
    assert rare.match_weight > common.match_weight
    assert rare.probability >= common.probability


def test_a_block_of_the_pair_alone_adjusts_nothing() -> None:
    tokeniser = _tokeniser()
    layout, population = _evidence(tokeniser, _population(3))
    model = fit(layout, population)
    _, pair = _evidence(tokeniser, _one_birthday(0)[:2])
    (scored,) = score_pairs(model, _dob_only(layout, pair), [])
    assert scored.tf_weight == pytest.approx(0.0, abs=1e-9)  # (10·u)/10 need not be u exactly
    dob = model.blocks[_block(layout, "dob")]
    assert scored.match_weight == pytest.approx(dob.match_weight(scored.agreement))


@given(
    u=st.floats(min_value=1e-4, max_value=0.9),
    gap=st.floats(min_value=-20.0, max_value=0.0),
    size=st.integers(min_value=2, max_value=500),
    data=st.data(),
)
def test_tf_adjustment_follows_the_value_share_and_is_bounded(
    u: float, gap: float, size: int, data: st.DataObject
) -> None:
    holders = data.draw(st.integers(min_value=2, max_value=size))
    adjust = tf_adjustment(u, gap, holders, size)
    assert adjust >= gap  # never below the next weaker level
    assert adjust <= math.log2((size - 2 + TF_PRIOR_PAIRS) / TF_PRIOR_PAIRS) + 1e-9  # floor
    share = (holders - 2) / (size - 2) if size > 2 else u
    if size == 2 or share == pytest.approx(u, rel=1e-9):
        assert adjust == pytest.approx(0.0, abs=1e-9)  # as common as the model expects
    elif share < u:
        assert adjust > 0  # rarer than expected: stronger evidence
    else:
        assert adjust <= 0
    if holders < size:  # one more holder: the value is commoner, the evidence weaker
        assert tf_adjustment(u, gap, holders + 1, size) <= adjust


@settings(max_examples=20, deadline=None)
@given(st.randoms(use_true_random=False))
def test_term_frequency_scores_do_not_depend_on_input_order(rng: random.Random) -> None:
    tokeniser = _tokeniser()
    layout, population = _evidence(tokeniser, _population(4, people=120))
    model = fit(layout, population)
    _, records = _evidence(tokeniser, _one_birthday(6))
    expected = score_pairs(model, records, [])
    shuffled = records[:]
    rng.shuffle(shuffled)
    cut = rng.randint(0, len(shuffled))
    assert score_pairs(model, shuffled[:cut], shuffled[cut:]) == [
        p
        for p in expected
        if p.left in {r.record for r in shuffled[:cut]}
        or p.right in {r.record for r in shuffled[:cut]}
    ]


def test_term_frequencies_count_only_the_pairs_own_block() -> None:
    """The privacy claim: a pair's adjustment reads its block's records and nothing else.
    Records of other blocks holding the same value leave the score alone; one more
    record holding the pair's values inside the block lowers it."""
    tokeniser = _tokeniser()
    layout, population = _evidence(tokeniser, _population(3))
    model = fit(layout, population)
    block = _one_birthday(4)
    outside = [
        (
            "gp",
            _record(
                f"far{i}",
                given_name="ZENOBIA",
                family_name=f"Y{i}",
                date_of_birth="1990-02-0" + str(i + 1),
            ),
        )
        for i in range(5)
    ]
    inside = [("hosp", block[0][1]._replace(local_id="near"))]

    def rare_pair(extra: list[tuple[str, NormalisedRecord]]) -> ScoredPair:
        _, records = _evidence(tokeniser, block + extra)
        (pair,) = [
            p
            for p in score_pairs(model, _dob_only(layout, records), [])
            if (p.left, p.right) == (0, 1)
        ]
        return pair

    alone = rare_pair([])
    assert rare_pair(outside) == alone
    assert rare_pair(inside).tf_weight < alone.tf_weight
