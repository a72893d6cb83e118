"""Splink (a bench-only dependency) on the same normalised plaintext, for comparison.

Splink is configured as its own documentation configures person data (the FEBRL4 and
50k-persons examples of Splink 5), once for every data set and never from the truth:

* comparisons from its library — ``NameComparison`` on given and family name with
  term-frequency adjustments, ``DateOfBirthComparison``, ``PostcodeComparison`` for UK
  postcodes (Damerau–Levenshtein at 1 and 2 with term frequencies for others, as its
  FEBRL4 example), Damerau–Levenshtein at 1 and 2 on the NHS number and the other id,
  exact sex and address line — each only where the column holds values, as a user drops
  empty columns after Splink's completeness chart;
* blocking rules whose union catches the pairs: both names, both names swapped, date of
  birth, each id, postcode, address line;
* the prior from deterministic rules (each id; both names and date of birth) at a
  nominal recall of 0.8, ``u`` by random sampling (10 million pairs, seeded), ``m`` by
  EM on two blocking passes (date of birth, then both names);
* links at p ≥ 0.5, resolved one to one by Splink's own ``cluster_using_single_best_links``
  with every dataset duplicate-free that the engine is told holds one record per person
  (all but the many-per-person datasets of :data:`bench.other_shapes.MANY_PER_PERSON`).

The result is a person per record, so precision and recall are counted exactly as the
engine's are (:func:`bench.probabilistic._rates`). Splink sees plaintext: it is the
recall to aim at, not a privacy peer.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from client_sdk.record import NormalisedRecord

__all__ = ["SPLINK_SEED", "run_splink", "splink_version"]

SPLINK_SEED = 7
"""Seed of the random sampling of ``u``, so runs of one version compare."""

_MATCH_PROBABILITY = 0.5
_RECALL_OF_DETERMINISTIC_RULES = 0.8
_U_PAIRS = 1e7
_MIN_FILLED = 0.01
"""A column takes part when at least this share of all records holds a value."""

_FIELDS = (
    "given_name",
    "family_name",
    "date_of_birth",
    "postcode",
    "sex",
    "nhs_number",
    "other_id",
    "address_line",
)
_IDS = ("nhs_number", "other_id")
_UK_POSTCODE = re.compile(r"[A-Z]{1,2}[0-9][A-Z0-9]? [0-9][A-Z]{2}")


def splink_version() -> str:
    """The installed Splink's version (results of different versions do not compare)."""
    from importlib.metadata import version

    return version("splink")


def run_splink(
    datasets: Mapping[str, Sequence[NormalisedRecord]], *, many: Collection[str] = ()
) -> dict[tuple[str, str], str]:
    """Splink's person (cluster id) for each ``(dataset, local_id)``; no truth is read.

    Every dataset is linked against every other in one ``link_only`` model; each is
    duplicate-free in the one-to-one resolution but those named in ``many`` (declared
    many records per person, as the engine is told).
    """
    from splink import DuckDBAPI, Linker, block_on

    logging.getLogger("splink").setLevel(logging.ERROR)
    columns = _filled_columns(datasets)
    db = DuckDBAPI()
    tables = [db.register(_table(records), table_name=name) for name, records in datasets.items()]
    linker = Linker(tables, _settings(columns, uk=_uk_postcodes(datasets)), log_level="ERROR")
    deterministic: list[Any] = [block_on(c) for c in _IDS if c in columns]
    deterministic.append(block_on("given_name", "family_name", "date_of_birth"))
    linker.training.estimate_probability_two_random_records_match(
        deterministic, recall=_RECALL_OF_DETERMINISTIC_RULES
    )
    linker.training.estimate_u_using_random_sampling(max_pairs=_U_PAIRS, seed=SPLINK_SEED)
    for rule in (block_on("date_of_birth"), block_on("given_name", "family_name")):
        linker.training.estimate_parameters_using_expectation_maximisation(
            rule, estimate_without_term_frequencies=True
        )
    predictions = linker.inference.predict(threshold_match_probability=_MATCH_PROBABILITY)
    clusters = linker.clustering.cluster_using_single_best_links(
        predictions,
        duplicate_free_datasets=[name for name in datasets if name not in many],
        threshold_match_probability=_MATCH_PROBABILITY,
    )
    return {
        (str(row["source_dataset"]), str(row["unique_id"])): str(row["cluster_id"])
        for row in clusters.as_record_list()
    }


def _filled_columns(datasets: Mapping[str, Sequence[NormalisedRecord]]) -> set[str]:
    records = [r for rs in datasets.values() for r in rs]
    floor = _MIN_FILLED * len(records)
    return {f for f in _FIELDS if sum(getattr(r, f) is not None for r in records) > floor}


def _uk_postcodes(datasets: Mapping[str, Sequence[NormalisedRecord]]) -> bool:
    """Whether most postcodes held are UK postcodes (Splink's postcode comparison)."""
    postcodes = [r.postcode for rs in datasets.values() for r in rs if r.postcode]
    uk = sum(_UK_POSTCODE.fullmatch(p) is not None for p in postcodes)
    return bool(postcodes) and 2 * uk > len(postcodes)


def _table(records: Sequence[NormalisedRecord]) -> Any:
    import pyarrow as pa

    data = {"unique_id": [r.local_id for r in records]}
    data |= {f: [getattr(r, f) for r in records] for f in _FIELDS}
    return pa.table(data, schema=pa.schema([(name, pa.string()) for name in data]))


def _settings(columns: set[str], *, uk: bool) -> Any:
    import splink.comparison_library as cl
    from splink import SettingsCreator, block_on

    comparisons: list[Any] = [
        cl.NameComparison(name).configure(term_frequency_adjustments=True)
        for name in ("given_name", "family_name")
    ]
    comparisons.append(
        cl.DateOfBirthComparison(
            "date_of_birth",
            input_is_string=True,
            datetime_format="%Y-%m-%d",
            invalid_dates_as_null=True,
        )
    )
    if "postcode" in columns:
        comparisons.append(
            cl.PostcodeComparison("postcode")
            if uk
            else cl.DamerauLevenshteinAtThresholds("postcode", [1, 2]).configure(
                term_frequency_adjustments=True
            )
        )
    if "sex" in columns:
        comparisons.append(cl.ExactMatch("sex"))
    comparisons += [cl.DamerauLevenshteinAtThresholds(c, [1, 2]) for c in _IDS if c in columns]
    if "address_line" in columns:
        comparisons.append(cl.ExactMatch("address_line").configure(term_frequency_adjustments=True))
    blocking: list[Any] = [
        block_on("given_name", "family_name"),
        "l.given_name = r.family_name and l.family_name = r.given_name",
        block_on("date_of_birth"),
        *(block_on(c) for c in (*_IDS, "postcode", "address_line") if c in columns),
    ]
    return SettingsCreator(
        link_type="link_only",
        comparisons=comparisons,
        blocking_rules_to_generate_predictions=blocking,
        retain_intermediate_calculation_columns=False,
    )
