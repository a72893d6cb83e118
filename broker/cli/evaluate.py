"""``tessera-broker evaluate``: linkage precision and recall against ground truth."""

from __future__ import annotations

import json
from pathlib import Path

import click

from broker.cli.operator import operator_runtime
from broker.evaluation import evaluate_linkage, read_truth_refs
from broker.store.linkage_store import LinkageStore
from broker.store.rotation_store import active_scope

__all__ = ["evaluate_command"]


@click.command("evaluate")
@click.option(
    "--truth",
    "truth_paths",
    multiple=True,
    required=True,
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="dataset,ref,truth_id CSV from `tessera-sdk truth-refs` (repeat per dataset).",
)
@click.option("--domain", required=True, help="The linkage domain the datasets belong to.")
@click.option("--json", "json_out", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--data-dir", type=click.Path(path_type=Path, file_okay=False), default=None)
def evaluate_command(
    truth_paths: tuple[Path, ...], domain: str, json_out: Path | None, data_dir: Path | None
) -> None:
    """Pairwise precision and recall of the linkage against ground truth (synthetic data).

    Only counts leave the broker: no reference or person id is printed.
    """
    truth = read_truth_refs(truth_paths)
    with operator_runtime(data_dir) as runtime:
        scope = active_scope(runtime.store, domain)
        result = evaluate_linkage(LinkageStore(runtime.store.redis, scope=scope), truth)
    numbers = {
        "records": result.records,
        "records_held": result.records_held,
        "true_pairs": result.true_pairs,
        "predicted_pairs": result.predicted_pairs,
        "correct_pairs": result.correct_pairs,
        "precision": round(result.precision, 6),
        "recall": round(result.recall, 6),
    }
    for name, value in numbers.items():
        click.echo(f"{name:<16} {value}")
    if json_out is not None:
        json_out.write_text(json.dumps(numbers, indent=2))
