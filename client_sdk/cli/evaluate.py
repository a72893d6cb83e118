"""``tessera-sdk truth-refs``: ground truth in the broker's terms, for evaluation only.

Turns the local ids of a ground-truth file into this organisation's references, so the
broker can measure its linkage without learning a local id.
"""

from __future__ import annotations

import csv
from pathlib import Path

import click

from client_sdk.config import org_passphrase
from client_sdk.orgstore import OrgStore
from keys.derive import ReferenceDeriver

__all__ = ["truth_refs_command"]


@click.command("truth-refs")
@click.option(
    "--truth",
    "truth_path",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="Ground truth CSV with dataset, local_id, person_id (as `tessera-sdk synth` writes).",
)
@click.option("--dir", "orgdir", required=True, type=click.Path(path_type=Path, file_okay=False))
@click.option("--dataset", required=True, help="The dataset name the batch was tokenised as.")
@click.option("--truth-dataset", default=None, help="The dataset's name in the truth file.")
@click.option("--out", required=True, type=click.Path(path_type=Path, dir_okay=False))
def truth_refs_command(
    truth_path: Path, orgdir: Path, dataset: str, truth_dataset: str | None, out: Path
) -> None:
    """Write dataset,ref,truth_id for one dataset's rows of a ground-truth file."""
    store = OrgStore.open(orgdir, org_passphrase())
    refs = ReferenceDeriver(store.reference_secret(), dataset=dataset)
    wanted = truth_dataset or dataset
    written = 0
    with truth_path.open(newline="", encoding="utf-8") as src, out.open("w", newline="") as dst:
        writer = csv.writer(dst)
        writer.writerow(["dataset", "ref", "truth_id"])
        for row in csv.DictReader(src):
            if row.get("dataset") == wanted:
                ref = refs.derive(row["local_id"]).hex()
                writer.writerow([f"{store.org}/{dataset}", ref, row["person_id"]])
                written += 1
    click.echo(f"{written} truth rows for {store.org}/{dataset} written to {out}")
