"""``tessera-broker report``: the linkage report on the terminal (or as JSON)."""

from __future__ import annotations

from pathlib import Path

import click

from broker.cli.operator import operator_runtime
from broker.linkage_report import LinkageReportOut, build_linkage_report

__all__ = ["format_report", "report_command"]


def format_report(report: LinkageReportOut) -> str:
    """The report as aligned plain text."""
    if not report.domains:
        return "no datasets declared yet"
    lines: list[str] = []
    for d in report.domains:
        lines.append(f"domain {d.domain}")
        lines.append(f"  records              {d.records:>12,}")
        lines.append(f"  persons              {d.persons:>12,}")
        lines.append(f"  linked persons       {d.linked_persons:>12,}")
        lines.append(f"  ambiguous tokens     {d.ambiguous_tokens:>12,}")
        lines.append(f"  conflicting records  {d.conflicting_records:>12,}")
        if d.rotation is not None:
            r = d.rotation
            lines.append(
                f"  key rotation         {r.from_version} -> {r.to_version}: {r.state}, "
                f"{r.datasets_moved} of {r.datasets_total} datasets moved"
            )
        for kind, n in sorted(d.conflicts_by_kind.items()):
            lines.append(f"    {kind:<19}{n:>12,}")
        if d.links_by_key:
            lines.append("  links by match key")
            for key, n in sorted(d.links_by_key.items(), key=lambda x: -x[1]):
                lines.append(f"    {key:<32}{n:>12,}")
        if d.links_by_dataset_pair:
            lines.append("  persons by dataset pair")
            for pair, n in sorted(d.links_by_dataset_pair.items()):
                lines.append(f"    {pair:<48}{n:>12,}")
        lines.append("  datasets")
        for ds in d.datasets:
            grade = ds.quality_grade or "-"
            per = "one per person" if ds.one_record_per_person else "many per person"
            lines.append(
                f"    {ds.dataset:<40}{ds.records:>12,} records {ds.linked_records:>12,} linked"
                f" {ds.ambiguous_tokens:>8,} ambiguous  grade {grade}  ({per})"
            )
    return "\n".join(lines)


@click.command(name="report")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Broker data directory (default TESSERA_BROKER_DATA_DIR or ./var/tessera).",
)
def report_command(as_json: bool, data_dir: Path | None) -> None:
    """Linkage report: records, persons, links by match key and by dataset pair,
    ambiguous and conflicting tokens, and each dataset's quality grade."""
    with operator_runtime(data_dir) as runtime:
        report = build_linkage_report(runtime.store)
    click.echo(report.model_dump_json(indent=2) if as_json else format_report(report))
