"""The linkage report across linkage domains, for ``GET /v1/linkage/report`` and the CLI.

Each linkage domain has its own linkage (tokens of two domains never match), so the
report has one section per domain holding declared datasets, with the counts the engine
keeps (:meth:`broker.linkage.Linker.report`) and each dataset's latest quality grade.
It holds counts only: no reference, token or payload value.

A domain's section never shows half a batch (:mod:`broker.visibility`): while one of its
batches links, the section is the one kept when its last batch was whole
(:func:`remember_domain_report`, called by the link worker).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from broker.linkage import Linker
from broker.probabilistic_report import ProbabilisticReportOut
from broker.rotation import rotation_progress
from broker.store import batches as batch_store
from broker.store.client import Store
from broker.store.datasets import dataset_id, list_all_datasets
from broker.store.linkage_store import LinkageStore, latest_quality_grades
from broker.store.rotation_store import active_scope
from broker.visibility import read_whole_once

__all__ = [
    "DatasetLinkageOut",
    "DomainLinkageOut",
    "LinkageReportOut",
    "RotationOut",
    "build_linkage_report",
    "remember_domain_report",
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


class RotationOut(_Out):
    """The domain's latest key rotation (broker/rotation.py): datasets moved of those due."""

    from_version: str
    to_version: str
    state: str
    datasets_moved: int
    datasets_total: int


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
    probabilistic: ProbabilisticReportOut | None = None
    """The probabilistic stage's weights and scores (:mod:`broker.probabilistic_report`),
    once the engine holds a fitted model."""
    rotation: RotationOut | None = None


class LinkageReportOut(_Out):
    """The linkage report: one section per linkage domain."""

    domains: list[DomainLinkageOut]


def _domain_section(store: Store, domain: str) -> DomainLinkageOut:
    """The live section of ``domain`` (it may hold part of a batch being linked)."""
    declared = [d for d in list_all_datasets(store) if d.domain == domain]
    grades = latest_quality_grades(store, [dataset_id(d.org, d.name) for d in declared])
    report = Linker(LinkageStore(store.redis, scope=active_scope(store, domain))).report()
    counted = {d.id: d for d in report.datasets}
    datasets: list[DatasetLinkageOut] = []
    for d in sorted(declared, key=lambda x: (x.org, x.name)):
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
    return DomainLinkageOut(
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


def _empty_section(store: Store, domain: str) -> DomainLinkageOut:
    """The section of a domain whose first batch is still linking: nothing yet."""
    live = _domain_section(store, domain)
    return DomainLinkageOut(
        domain=domain,
        records=0,
        persons=0,
        linked_persons=0,
        links_by_key={},
        links_by_dataset_pair={},
        ambiguous_tokens=0,
        conflicting_records=0,
        conflicts_by_kind={},
        datasets=[
            d.model_copy(update={"records": 0, "linked_records": 0, "ambiguous_tokens": 0})
            for d in live.datasets
        ],
    )


def remember_domain_report(store: Store, domain: str) -> bool:
    """Keep ``domain``'s section as it is now, if no batch of it is half linked.

    Returns:
        Whether it was kept (not when a batch of the domain is linking, or was written to
        while the section was read: the next whole batch keeps it).
    """
    whole, section = read_whole_once(store, domain, lambda: _domain_section(store, domain))
    if whole and section is not None:
        batch_store.save_report_snapshot(store, domain, section.model_dump_json().encode())
    return whole


def _whole_section(store: Store, domain: str) -> DomainLinkageOut:
    whole, section = read_whole_once(store, domain, lambda: _domain_section(store, domain))
    if whole and section is not None:
        return section
    kept = batch_store.load_report_snapshot(store, domain)
    if kept is None:
        return _empty_section(store, domain)
    return DomainLinkageOut.model_validate_json(kept)


def build_linkage_report(store: Store) -> LinkageReportOut:
    """The linkage report of every domain that has a declared dataset.

    Args:
        store: the broker's store.

    Returns:
        Counts per domain and per dataset, with quality grades from the latest batches,
        each domain as of its last whole batch.
    """
    domains = sorted({d.domain for d in list_all_datasets(store)})
    return LinkageReportOut(domains=[_with_rotation(store, domain) for domain in domains])


def _with_rotation(store: Store, domain: str) -> DomainLinkageOut:
    """The domain's section, with its key rotation's progress as it is now."""
    section = _whole_section(store, domain)
    progress = rotation_progress(store, domain)
    if progress is None:
        return section
    rotation = RotationOut(
        from_version=progress.from_version,
        to_version=progress.to_version,
        state=progress.state,
        datasets_moved=progress.datasets_moved,
        datasets_total=progress.datasets_total,
    )
    return section.model_copy(update={"rotation": rotation})
