"""bench.splink_run: Splink links datasets one to one, from the records alone.

Splink is a bench-only dependency (``make bench`` installs the ``bench`` extra), so
these tests run where it is installed and are skipped elsewhere.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from datetime import date, timedelta

import pytest

from bench.probabilistic import _splink
from client_sdk.record import NormalisedRecord

pytest.importorskip("splink")

from bench.splink_run import run_splink  # noqa: E402  (after the skip)

_GIVEN = ("OLIVIA", "AMELIA", "ISLA", "NOAH", "OLIVER", "GEORGE", "ARTHUR", "LEO", "MUHAMMAD")
_FAMILY = ("SMITH", "JONES", "TAYLOR", "BROWN", "WILLIAMS", "WILSON", "JOHNSON", "DAVIES")
_POSTCODES = ("BA1 1AA", "BS8 4TJ", "TA9 4XS", "CF23 8TL", "LS13 6AA", "B22 8PH")


def _people(n: int, rng: random.Random) -> list[NormalisedRecord]:
    people = []
    for _ in range(n):
        born = date(1930, 1, 1) + timedelta(days=rng.randrange(30_000))
        people.append(
            NormalisedRecord(
                line=0,
                local_id="",
                given_name=rng.choice(_GIVEN),
                family_name=rng.choice(_FAMILY),
                date_of_birth=born.isoformat(),
                postcode=rng.choice(_POSTCODES),
                sex=rng.choice(("M", "F")),
                nhs_number=str(rng.randrange(10**9, 10**10)),
            )
        )
    return people


def _typo(value: str | None, rng: random.Random) -> str | None:
    if value is None:
        return None
    i = rng.randrange(len(value))
    return value[:i] + rng.choice("AEIOURST") + value[i + 1 :]


def _extract(
    people: list[NormalisedRecord], ids: list[int], rng: random.Random, *, error: float
) -> list[NormalisedRecord]:
    """Each person's record, every field wrong or missing at the rate ``error``."""
    records = []
    for line, i in enumerate(ids, start=2):
        person = people[i]
        born = date.fromisoformat(person.date_of_birth or "")
        if rng.random() < error:
            born += timedelta(days=rng.choice((-1, 1, 31, 365)))
        records.append(
            person._replace(
                line=line,
                local_id=f"r{rng.getrandbits(40)}",
                given_name=_typo(person.given_name, rng)
                if rng.random() < error
                else person.given_name,
                family_name=_typo(person.family_name, rng)
                if rng.random() < error
                else person.family_name,
                date_of_birth=born.isoformat(),
                postcode=rng.choice(_POSTCODES) if rng.random() < error else person.postcode,
                sex=None if rng.random() < error / 4 else person.sex,
                nhs_number=None if rng.random() < error else person.nhs_number,
            )
        )
    return records


def _two_extracts(
    seed: int,
) -> tuple[dict[str, list[NormalisedRecord]], dict[tuple[str, str], int]]:
    rng = random.Random(seed)
    people = _people(600, rng)
    left_ids = rng.sample(range(600), 400)
    right_ids = rng.sample(range(600), 400)
    datasets = {
        "gp": _extract(people, left_ids, rng, error=0.05),
        "hospital": _extract(people, right_ids, rng, error=0.15),
    }
    truth = {}
    for name, ids in (("gp", left_ids), ("hospital", right_ids)):
        for record, person in zip(datasets[name], ids, strict=True):
            truth[(name, record.local_id)] = person
    return datasets, truth


def test_every_record_gets_a_person_and_no_person_holds_two_of_one_dataset() -> None:
    datasets, _ = _two_extracts(seed=3)
    persons = run_splink(datasets)
    assert set(persons) == {(name, r.local_id) for name, rs in datasets.items() for r in rs}
    per_dataset = Counter((name, person) for (name, _), person in persons.items())
    assert max(per_dataset.values()) == 1


def test_splink_finds_the_people_both_extracts_share() -> None:
    datasets, truth = _two_extracts(seed=5)
    report = _splink(datasets, truth)
    assert isinstance(report, dict)
    shared = defaultdict(set)
    for (name, _), person in truth.items():
        shared[person].add(name)
    assert report["pairs"] <= sum(len(names) == 2 for names in shared.values())
    # errors are independent across fields, so nearly every shared person agrees on most
    assert report["recall"] >= 0.95
    assert report["precision"] >= 0.99
