"""Splink (a bench-only dependency) on the same normalised plaintext, for comparison.

The settings follow Splink's own tutorial for person data: name, date of birth and
postcode comparisons from its comparison library, an exact comparison on the NHS number
or other id, blocking on date of birth, the id, and names; ``u`` by random sampling,
``m`` by EM on two blocking passes; links at p ≥ 0.5 resolved one to one, best first,
as in the issue's measurement. Splink sees plaintext: it is the recall to aim at, not a
privacy peer.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any

from client_sdk.record import NormalisedRecord

__all__ = ["run_splink"]

_FIELDS = (
    "given_name",
    "family_name",
    "date_of_birth",
    "postcode",
    "sex",
    "nhs_number",
    "other_id",
)


def _frame(records: list[NormalisedRecord], dataset: str) -> Any:
    import pandas as pd

    rows = [
        {"unique_id": f"{dataset}|{r.local_id}", **{f: getattr(r, f) for f in _FIELDS}}
        for r in records
    ]
    frame = pd.DataFrame(rows, columns=["unique_id", *_FIELDS])
    frame["date_of_birth"] = pd.to_datetime(frame["date_of_birth"], errors="coerce")
    return frame


def run_splink(
    datasets: dict[str, list[NormalisedRecord]], truth: dict[tuple[str, str], int]
) -> dict[str, float] | str:
    """Splink's precision and recall on two datasets (more are linked pairwise in turn)."""
    import splink.comparison_library as cl
    from splink import Linker, SettingsCreator, block_on
    from splink.backends.duckdb import DuckDBAPI

    logging.getLogger("splink").setLevel(logging.ERROR)
    names = list(datasets)
    if len(names) < 2:
        return "one dataset"
    linked: set[tuple[str, str]] = set()
    for i, left in enumerate(names):
        for right in names[i + 1 :]:
            linked |= _link_two(
                datasets,
                left,
                right,
                cl=cl,
                Linker=Linker,
                SettingsCreator=SettingsCreator,
                block_on=block_on,
                DuckDBAPI=DuckDBAPI,
            )
    true_pairs = 0
    by_person: dict[int, list[str]] = defaultdict(list)
    for (dataset, local_id), pid in truth.items():
        by_person[pid].append(f"{dataset}|{local_id}")
    for members in by_person.values():
        for a in range(len(members)):
            for b in range(a + 1, len(members)):
                if members[a].split("|")[0] != members[b].split("|")[0]:
                    true_pairs += 1

    def person(uid: str) -> int:
        dataset, local_id = uid.split("|", 1)
        return truth[(dataset, local_id)]

    correct = sum(person(a) == person(b) for a, b in linked)
    return {
        "precision": correct / len(linked) if linked else 1.0,
        "recall": correct / true_pairs if true_pairs else 0.0,
        "pairs": float(len(linked)),
    }


def _link_two(
    datasets: dict[str, list[NormalisedRecord]], left: str, right: str, **api: Any
) -> set[tuple[str, str]]:
    cl, Linker, SettingsCreator, block_on, DuckDBAPI = (
        api["cl"],
        api["Linker"],
        api["SettingsCreator"],
        api["block_on"],
        api["DuckDBAPI"],
    )
    db = DuckDBAPI()
    frames = [_frame(datasets[left], left), _frame(datasets[right], right)]
    has_nhs = any(f["nhs_number"].notna().any() for f in frames)
    id_column = "nhs_number" if has_nhs else "other_id"
    settings = SettingsCreator(
        link_type="link_only",
        comparisons=[
            cl.NameComparison("given_name"),
            cl.NameComparison("family_name"),
            cl.DateOfBirthComparison("date_of_birth", input_is_string=False),
            cl.PostcodeComparison("postcode")
            if has_nhs
            else cl.LevenshteinAtThresholds("postcode", [1]),
            *([cl.ExactMatch("sex")] if has_nhs else []),
            cl.LevenshteinAtThresholds(id_column, [1, 2]),
        ],
        blocking_rules_to_generate_predictions=[
            block_on("date_of_birth"),
            block_on(id_column),
            block_on("given_name", "family_name"),
            block_on("family_name", "postcode"),
        ],
        retain_intermediate_calculation_columns=False,
    )
    registered = [
        db.register(frames[0], table_name=f"t_{left}"),
        db.register(frames[1], table_name=f"t_{right}"),
    ]
    linker = Linker(registered, settings, log_level="ERROR")
    linker.training.estimate_probability_two_random_records_match(
        [block_on("given_name", "family_name", "date_of_birth")], recall=0.7
    )
    linker.training.estimate_u_using_random_sampling(max_pairs=2e6)
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("date_of_birth"))
    linker.training.estimate_parameters_using_expectation_maximisation(
        block_on("given_name", "family_name")
    )
    predictions = linker.inference.predict(threshold_match_probability=0.5).as_pandas_dataframe()
    predictions = predictions.sort_values("match_probability", ascending=False)
    used_left: set[str] = set()
    used_right: set[str] = set()
    out: set[tuple[str, str]] = set()
    for a, b in zip(predictions["unique_id_l"], predictions["unique_id_r"], strict=True):
        if a in used_left or b in used_right:
            continue
        used_left.add(a)
        used_right.add(b)
        out.add((a, b))
    return out
