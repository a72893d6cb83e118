"""The default spec's key order on the cases that decided it (docs/linkage-spec.md).

Records are tokenised with the real tokeniser and linked by ``bench.spec_eval.link``,
the in-memory model of the broker's rules (strongest usable key wins, no chaining).
The measurements behind the order are ``bench/populations.py``; these are the cases.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from bench.populations import SCENARIOS, build
from bench.spec_eval import link
from client_sdk.record import NormalisedRecord
from client_sdk.tokenise import Tokeniser
from keys.spec import default_spec
from tests.support.tokenise_world import fixed_params

SPEC = default_spec()


def _person(local_id: str, nhs: str, given: str, dob: str) -> NormalisedRecord:
    return NormalisedRecord(
        line=0,
        local_id=local_id,
        nhs_number=nhs,
        given_name=given,
        given_name_key=given,
        family_name="SMITH",
        date_of_birth=dob,
        sex="M",
        postcode="BA1 1AA",
    )


def _link(datasets: dict[str, list[NormalisedRecord]]) -> tuple[dict[str, int], dict[str, str]]:
    tokeniser = Tokeniser(fixed_params("test"))
    tokens = {
        name: [(r.local_id, tokeniser.tokens(r)) for r in records]
        for name, records in datasets.items()
    }
    result = link(tokens, len(SPEC.match_keys))
    persons = {local_id: person for (_, local_id), person in result.person_of.items()}
    via = {
        local_id: SPEC.key_names[k]
        for (_, local_id), k in result.joined_by.items()
        if k is not None
    }
    return persons, via


# Two valid NHS numbers (modulus 11), never issued to anyone real.
FATHER_NHS, SON_NHS = "9434765919", "9434765870"


def test_a_son_carrying_his_fathers_nhs_number_joins_himself() -> None:
    """Same names and address, JR dropped: only the date of birth tells them apart."""
    gp = [
        _person("father", FATHER_NHS, "JOHN", "1960-05-04"),
        _person("son", SON_NHS, "JOHN", "1990-08-12"),
    ]
    hospital = [_person("visit", FATHER_NHS, "JOHN", "1990-08-12")]  # the wrong patient picked
    persons, via = _link({"gp": gp, "hospital": hospital})
    assert persons["visit"] == persons["son"] != persons["father"]
    assert via["visit"] == "given_family_dob_postcode"


def test_a_correct_nhs_number_with_a_mistyped_year_still_links() -> None:
    gp = [_person("gp", FATHER_NHS, "JOHN", "1980-05-04")]
    hospital = [_person("visit", FATHER_NHS, "JOHN", "1908-05-04")]
    persons, via = _link({"gp": gp, "hospital": hospital})
    assert persons["visit"] == persons["gp"]
    assert via["visit"] == "nhs_family_initial" == SPEC.key_names[-1]


def test_names_in_each_others_fields_link_through_the_unordered_key() -> None:
    """No NHS number, BILL SMITH keyed as SMITH, BILL: only the unordered pair sees it."""
    gp = [
        _person("gp", FATHER_NHS, "WILLIAM", "1980-05-04"),
        _person("brother", SON_NHS, "JAMES", "1983-02-01"),
    ]
    swapped = _person("visit", "", "SMITH", "1980-05-04")._replace(
        given_name_key="SMITH", family_name="BILL", nhs_number=None
    )
    persons, via = _link({"gp": gp, "hospital": [swapped]})
    assert persons["visit"] == persons["gp"] != persons["brother"]
    assert via["visit"] == "given_family_dob_postcode"


def test_population_scenarios_are_deterministic_and_carry_their_truth() -> None:
    scenario = next(s for s in SCENARIOS if s.name == "combined")
    built = []
    for _ in range(2):
        with tempfile.TemporaryDirectory() as tmp:
            built.append(build(scenario, 400, seed=3, work=Path(tmp)))
    (datasets, truth), (again, _) = built
    assert datasets == again
    assert set(datasets) == {"gp", "hospital"}
    assert all(datasets.values())
    assert {(name, r.local_id) for name, rs in datasets.items() for r in rs} == set(truth)
