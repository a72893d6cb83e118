"""The linkage report across linkage domains, for ``GET /v1/linkage/report`` and the CLI.

Each linkage domain has its own linkage (tokens of two domains never match), so the
report has one section per domain holding declared datasets, with the counts the engine
keeps (:meth:`broker.linkage.Linker.report`) and each dataset's latest quality grade.
It holds counts only: no reference, token or payload value.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from broker.linkage import Linker
from broker.store.client import Store
from broker.store.datasets import dataset_id, list_all_datasets
from broker.store.linkage_store import LinkageStore, latest_quality_grades

__all__ = [
    "DatasetLinkageOut",
    "DomainLinkageOut",
    "LinkageReportOut",
    "build_linkage_report",
]


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetLinkageOut(_Out):
    """Linkage counts of one dataset."""

    dataset: str
    org: str
    one_record_per_person: bool
    records: int
    linked_records: int
    ambiguous_tokens: int
    quality_grade: str | None


class DomainLinkageOut(_Out):
    """The linkage of one domain."""

    domain: str
    records: int
    persons: int
    linked_persons: int
    links_by_key: dict[str, int]
    links_by_dataset_pair: dict[str, int]
    ambiguous_tokens: int
    conflicting_records: int
    conflicts_by_kind: dict[str, int]
    datasets: list[DatasetLinkageOut]


class LinkageReportOut(_Out):
    """The linkage report: one section per linkage domain."""

    domains: list[DomainLinkageOut]


def build_linkage_report(store: Store) -> LinkageReportOut:
    """The linkage report of every domain that has a declared dataset.

    Args:
        store: the broker's store.

    Returns:
        Counts per domain and per dataset, with quality grades from the latest batches.
    """
    declared = list_all_datasets(store)
    domains = sorted({d.domain for d in declared})
    grades = latest_quality_grades(store, [dataset_id(d.org, d.name) for d in declared])
    sections: list[DomainLinkageOut] = []
    for domain in domains:
        report = Linker(LinkageStore(store.redis, scope=domain)).report()
        counted = {d.id: d for d in report.datasets}
        datasets: list[DatasetLinkageOut] = []
        for d in sorted(declared, key=lambda x: (x.org, x.name)):
            if d.domain != domain:
                continue
            ident = dataset_id(d.org, d.name)
            held = counted.get(ident)
            datasets.append(
                DatasetLinkageOut(
                    dataset=ident,
                    org=d.org,
                    one_record_per_person=d.one_record_per_person,
                    records=held.records if held else 0,
                    linked_records=held.linked_records if held else 0,
                    ambiguous_tokens=held.ambiguous_tokens if held else 0,
                    quality_grade=grades.get(ident),
                )
            )
        sections.append(
            DomainLinkageOut(
                domain=domain,
                records=report.records,
                persons=report.persons,
                linked_persons=report.linked_persons,
                links_by_key=report.links_by_key,
                links_by_dataset_pair=report.links_by_dataset_pair,
                ambiguous_tokens=report.ambiguous_tokens,
                conflicting_records=report.conflicting_records,
                conflicts_by_kind=report.conflicts_by_kind,
                datasets=datasets,
            )
        )
    return LinkageReportOut(domains=sections)
