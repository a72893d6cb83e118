"""``tessera-sdk review``: the possible matches and conflicts of your own records.

The broker answers with your own references only; the local index (kept only here) turns
them into local ids, so the file says *which of your patients* to check, the kind of
doubt, the other dataset's id, and which evidence agreed or disagreed. It never holds the
other party's values or references (docs/review.md).
"""

from __future__ import annotations

from pathlib import Path

import click

from client_sdk.cli.broker import broker_option, cli_transport_options
from client_sdk.config import broker_target
from client_sdk.export import write_table
from client_sdk.local_index import LocalIndex
from client_sdk.release_client import ReleaseClient
from keys.derive import RecordRef
from keys.wire_review import Outcome, ReviewItem

__all__ = ["REVIEW_COLUMNS", "review_command"]

REVIEW_COLUMNS = (
    "local_id",
    "dataset",
    "domain",
    "doubt",
    "other_dataset",
    "probability",
    "blocking_key",
    "agreed",
    "disagreed",
    "not_compared",
)
"""The review file's columns, in order."""


def _evidence(item: ReviewItem, outcome: Outcome) -> str:
    """``name: level`` of every piece of evidence with ``outcome``, joined by ``; ``."""
    return "; ".join(
        f"{e.evidence}: {e.level}" if e.level and outcome is Outcome.AGREES else e.evidence
        for e in item.evidence
        if e.outcome is outcome
    )


@click.command(name="review")
@click.option(
    "--dir",
    "orgdir",
    required=True,
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    help="The organisation directory (its local index maps references to local ids).",
)
@click.option(
    "--out", required=True, type=click.Path(path_type=Path, dir_okay=False), help="Output file."
)
@broker_option
def review_command(orgdir: Path, out: Path, broker_url: str | None) -> None:
    """Download the doubts about your own records, as a CSV of your local ids.

    One row per doubt: a possible match the broker did not link, or a conflict between
    match keys it recorded. Check the record, correct it at source (a PDS trace, a typo)
    and upload it again.
    """
    with ReleaseClient(*broker_target(broker_url), **cli_transport_options()) as client:
        review = client.review()
    by_dataset: dict[str, list[ReviewItem]] = {}
    for item in review.items:
        by_dataset.setdefault(item.dataset, []).append(item)
    rows: list[list[str | int | None]] = []
    unknown = 0
    for dataset, items in sorted(by_dataset.items()):
        refs = [RecordRef(bytes.fromhex(item.ref)) for item in items]
        with LocalIndex.open(orgdir, dataset) as index:
            local = index.lookup(refs)
        for item, ref in zip(items, refs, strict=True):
            local_id = local.get(ref)
            if local_id is None:
                unknown += 1
                continue
            probability = None if item.probability is None else f"{item.probability:.4f}"
            rows.append(
                [
                    local_id,
                    dataset,
                    item.domain,
                    item.doubt.value,
                    item.other_dataset,
                    probability,
                    item.blocking_key or None,
                    _evidence(item, Outcome.AGREES),
                    _evidence(item, Outcome.DISAGREES),
                    _evidence(item, Outcome.NOT_COMPARED),
                ]
            )
    rows.sort(key=lambda r: tuple(str(v) for v in r))
    write_table(out, REVIEW_COLUMNS, rows)
    kinds = ", ".join(f"{n} {k}" for k, n in sorted(review.counts.items()) if k != "items")
    click.echo(
        f"wrote {len(rows)} items to review to {out}" + (f": {kinds}" if kinds else ""), err=True
    )
    if unknown:
        click.echo(
            f"warning: {unknown} references are not in this directory's local index "
            "(tokenised elsewhere, or the index was replaced)",
            err=True,
        )
