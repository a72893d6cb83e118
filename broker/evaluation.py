"""Precision and recall of the linkage against ground truth, for synthetic or audited data.

Ground truth reaches the broker as ``dataset,ref,truth_id`` rows: each organisation turns
its own truth file's local ids into references (``tessera-sdk truth-refs``), so the broker
learns no local id and releases no person id: only the pairwise counts below leave it.

Pairwise measures over the records named in the truth: a *predicted pair* is two records
the broker put in one person, a *true pair* two records of one true person. A truth record
the broker does not hold (rejected before upload) counts as a person of its own.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from broker.errors import BadRequestError
from broker.store.linkage_store import LinkageStore
from keys.derive import RecordRef

__all__ = ["LinkageEvaluation", "evaluate_linkage", "read_truth_refs"]


@dataclass(frozen=True, slots=True)
class LinkageEvaluation:
    """Pairwise precision and recall of one linkage against ground truth."""

    records: int
    records_held: int
    true_pairs: int
    predicted_pairs: int
    correct_pairs: int

    @property
    def precision(self) -> float:
        """Share of predicted pairs that are true pairs (1.0 when nothing was linked)."""
        return self.correct_pairs / self.predicted_pairs if self.predicted_pairs else 1.0

    @property
    def recall(self) -> float:
        """Share of true pairs that were linked (1.0 when there are none)."""
        return self.correct_pairs / self.true_pairs if self.true_pairs else 1.0


def read_truth_refs(paths: Iterable[Path]) -> dict[tuple[str, RecordRef], str]:
    """Read ``dataset,ref,truth_id`` CSV files (ref in hex) into one mapping.

    Raises:
        BadRequestError: a file without those columns or with a malformed reference.
    """
    truth: dict[tuple[str, RecordRef], str] = {}
    for path in paths:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            if not {"dataset", "ref", "truth_id"} <= set(reader.fieldnames or ()):
                raise BadRequestError(f"{path}: needs the columns dataset, ref, truth_id")
            for line, row in enumerate(reader, start=2):
                try:
                    ref = RecordRef(bytes.fromhex(row["ref"]))
                except ValueError:
                    raise BadRequestError(f"{path}:{line}: malformed reference") from None
                truth[(row["dataset"], ref)] = row["truth_id"]
    return truth


def _pairs(sizes: Iterable[int]) -> int:
    return sum(n * (n - 1) // 2 for n in sizes)


def evaluate_linkage(
    linkage: LinkageStore, truth: Mapping[tuple[str, RecordRef], str]
) -> LinkageEvaluation:
    """Compare the persons ``linkage`` holds with ``truth``.

    Args:
        linkage: the linkage store of the domain the truth's datasets belong to.
        truth: ``(dataset id, reference) -> true person id``.
    """
    predicted: dict[tuple[str, RecordRef], int] = {}
    for dataset in sorted({ds for ds, _ in truth}):
        for ref, person in linkage.iter_dataset(dataset):
            if (dataset, ref) in truth:
                predicted[(dataset, ref)] = int(person)
    by_true = Counter(truth.values())
    by_predicted = Counter(predicted.values())
    by_both = Counter((truth[key], person) for key, person in predicted.items())
    return LinkageEvaluation(
        records=len(truth),
        records_held=len(predicted),
        true_pairs=_pairs(by_true.values()),
        predicted_pairs=_pairs(by_predicted.values()),
        correct_pairs=_pairs(by_both.values()),
    )
