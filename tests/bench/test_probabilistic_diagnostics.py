"""bench.probabilistic's diagnostics: the misses and the wrong links it lists against a truth.

The engine links the independent model's records as it always does; the truth handed to
the diagnostics is then changed, so that the listed pairs are known: a true person split
in two turns its link into a wrong one, two persons joined turn their pair into a miss.
"""

from __future__ import annotations

from bench.probabilistic import engine_links
from bench.spec_eval import generate
from keys.spec import PROBABILISTIC_SPEC_NAME, default_spec


def _record(listed: str) -> tuple[str, str]:
    dataset, local_id = listed.split(" | ")[0].split(":")
    return dataset, local_id


def test_a_split_person_is_a_wrong_link_and_a_joined_pair_a_miss() -> None:
    datasets, truth = generate(150, seed=5)
    spec = default_spec(PROBABILISTIC_SPEC_NAME)
    person_of, _ = engine_links(spec, datasets)
    linked: dict[int, list[tuple[str, str]]] = {}
    for key, pid in person_of.items():
        linked.setdefault(pid, []).append(key)
    split = next(m for m in linked.values() if len(m) == 2 and truth[m[0]] == truth[m[1]])
    alone = [m[0] for m in linked.values() if len(m) == 1]
    joined = (alone[0], next(key for key in alone if key[0] != alone[0][0]))
    changed = dict(truth)
    changed[split[1]] = -1  # the second record of a linked pair is someone else
    changed[joined[0]] = changed[joined[1]] = -2  # two records left apart are one person

    _, measured = engine_links(spec, datasets, truth=changed)

    wrong = measured["wrong_links"]
    assert {(_record(w["record"]), _record(w["partner"])) for w in wrong} == {
        (split[0], split[1]),
        (split[1], split[0]),
    }
    assert all(w["kind"] in {"match_key", "probabilistic"} and w["key"] for w in wrong)
    missed = {frozenset((_record(m["a"]), _record(m["b"]))) for m in measured["misses"]}
    assert frozenset(joined) in missed
    assert frozenset(split) not in missed
