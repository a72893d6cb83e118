"""Releases under an active agreement: cohorts, aggregates and direct-care returns.

Every release is computed from the linkage as it stands at the moment of the request, so
an opt-out, a retraction or a replacement takes effect on the next release, and a revoked
or expired agreement releases nothing (broker/agreements.py checks that first).

* :func:`release_cohort` — one row per person, keyed by a project pseudonym
  (:func:`keys.derive.derive_pseudonym` of the person under the agreement), with only the
  released fields, in random order, then its ``link_quality``
  (:mod:`broker.link_quality`). No token, reference or internal id.
* :func:`release_aggregate` — counts by released fields over the agreement's population,
  with every margin and the total, protected by primary and secondary suppression
  (:func:`protect_table`) or by rounding.
* :func:`release_linked` — for each of the requesting organisation's own references, the
  released attributes linked to it, then the record's ``link_quality``. Only its own
  references, never another's.

A person's value for a field is the value on their record in that dataset; when they
have several records there (a dataset of episodes, or duplicates), the distinct values,
sorted and joined with ``;``. A person with no record there has no value (``None``).

Opt-outs: where the agreement says they apply, a person linked to any record of an
opt-out register (a dataset of the same linkage domain the operator designated, see
:mod:`broker.opt_out_registers`) is left out of every release. Opt-outs applied at the
source (:mod:`client_sdk.opt_out`) travel as a research-restricted flag stored with each
record: a person with a flagged record is left out of every *research* release (cohorts,
aggregates) where opt-outs apply, and stays in direct-care returns, which opt-outs do not
govern. Such a release is refused, with one line, when a record it would read comes from a
batch whose national opt-out check is older than the agreement's ``opt_out_max_age_days``.
Only counts of what was withheld are kept (the audit entry's ``research_restricted``).
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from itertools import product

from broker.agreements import (
    Agreement,
    NotReleasedError,
    StaleOptOutCheckError,
    agreement_datasets,
)
from broker.audit import RELEASE_ACTION, append_audit
from broker.disclosure import (
    NEAREST_BASE,
    CountRounding,
    DisclosureProfile,
    profile_of,
)
from broker.errors import BadRequestError
from broker.link_quality import link_qualities
from broker.store.client import Store
from broker.store.datasets import list_all_datasets, list_opt_out_registers
from broker.store.identities import Identity
from broker.store.linkage_codec import CHECK_DAY_EPOCH
from broker.store.linkage_store import LinkageStore, LinkedRecord
from broker.store.rotation_store import active_scope
from broker.visibility import read_whole
from keys.derive import derive_pseudonym
from keys.wire import DatasetInfoOut
from keys.wire_release import (
    LINK_QUALITY_COLUMN,
    AggregateCell,
    AggregateControl,
    AggregateOut,
    AggregateRequest,
    AgreementKind,
    AgreementTerms,
    CohortOut,
    CohortRequest,
    LinkedOut,
    LinkedRow,
    Predicate,
    field_label,
)

__all__ = [
    "PSEUDONYM_COLUMN",
    "Cell",
    "ProtectedTable",
    "protect_table",
    "release_aggregate",
    "release_cohort",
    "release_linked",
    "round_count",
]

PSEUDONYM_COLUMN = "pseudonym"
_PRIME = (1 << 61) - 1

Cell = tuple[str | None, ...]
"""A table entry's coordinates: one value per dimension, ``None`` for the margin."""


# Reading the linkage -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Column:
    label: str
    dataset: str
    index: int


@dataclass(frozen=True, slots=True)
class _Source:
    """What a release reads: the linkage of the agreement's domain and its columns."""

    store: Store
    domain: str
    datasets: dict[str, DatasetInfoOut]
    columns: dict[str, _Column]
    opt_out: frozenset[str]
    oldest_check: int = 0
    """Research: the earliest check day (days since 1970-01-01) a record may carry; 0 when
    source-side opt-outs do not apply (direct care, or an agreement without opt-outs)."""
    max_age: int = 0

    @property
    def linkage(self) -> LinkageStore:
        """The domain's linkage as it is now: after a key rotation's switch, the new one
        (read_whole notices a switch during a read, broker/rotation.py)."""
        return LinkageStore(self.store.redis, scope=active_scope(self.store, self.domain))


def _source(store: Store, agreement: Agreement, *, today: date | None = None) -> _Source:
    declared = agreement_datasets(store, agreement.terms)
    domain = next(iter(declared.values())).domain
    columns: dict[str, _Column] = {}
    for release in agreement.terms.datasets:
        info = declared[release.dataset_id]
        for name in release.fields:
            label = field_label(release.org, release.name, name)
            columns[label] = _Column(label, release.dataset_id, info.payload_columns.index(name))
    opt_out: frozenset[str] = frozenset()
    if agreement.opt_outs_apply:
        # Only the registers the operator designated (never a kind an organisation set).
        designated = {r.dataset for r in list_opt_out_registers(store)}
        opt_out = frozenset(
            f"{d.org}/{d.name}"
            for d in list_all_datasets(store)
            if f"{d.org}/{d.name}" in designated and d.domain == domain
        )
    terms = agreement.terms
    if not agreement.opt_outs_apply or terms.kind is AgreementKind.DIRECT_CARE:
        return _Source(store, domain, declared, columns, opt_out)
    day = ((today or datetime.now(UTC).date()) - CHECK_DAY_EPOCH).days
    max_age = terms.opt_out_max_age_days
    return _Source(store, domain, declared, columns, opt_out, day - max_age, max_age)


def _check_fresh(source: _Source, record: LinkedRecord) -> None:
    """Refuse a research release that would read a record whose opt-out check is stale."""
    if record.checked_day and record.checked_day < source.oldest_check:
        checked = CHECK_DAY_EPOCH + timedelta(days=record.checked_day)
        raise StaleOptOutCheckError(
            f"dataset {record.dataset}: opt-outs were last checked on {checked.isoformat()}, "
            f"more than the agreement's {source.max_age} days ago: check again and upload "
            "a new batch"
        )


def _value(records: Sequence[LinkedRecord], column: _Column) -> str | None:
    values = sorted(
        {
            str(r.payload[column.index])
            for r in records
            if r.dataset == column.dataset
            and column.index < len(r.payload)
            and r.payload[column.index] is not None
        }
    )
    return ";".join(values) if values else None


@dataclass(frozen=True, slots=True)
class _Person:
    pid: int
    by_dataset: dict[str, list[LinkedRecord]]


def _persons(source: _Source, counts: dict[str, int]) -> Iterator[_Person]:
    """Persons with a record in an agreement dataset, opted-out persons left out."""
    for pid, records in source.linkage.iter_persons():
        by_dataset: dict[str, list[LinkedRecord]] = {}
        for record in records:
            by_dataset.setdefault(record.dataset, []).append(record)
        if not any(d in source.datasets for d in by_dataset):
            continue
        if any(d in source.opt_out for d in by_dataset):
            counts["opted_out"] = counts.get("opted_out", 0) + 1
            continue
        if source.max_age:
            for record in records:
                if record.dataset in source.datasets:
                    _check_fresh(source, record)
            if any(r.restricted for r in records):
                counts["research_restricted"] = counts.get("research_restricted", 0) + 1
                continue
        yield _Person(pid, by_dataset)


def _audit(
    store: Store,
    identity: Identity,
    agreement: Agreement,
    counts: Mapping[str, int],
    now: datetime | None,
) -> None:
    append_audit(
        store,
        identity=identity.name,
        role=identity.role.value,
        action=RELEASE_ACTION,
        agreement=agreement.id,
        counts=counts,
        now=now,
    )


# Predicates ---------------------------------------------------------------------------------


def _number(text: str | float) -> float | None:
    if isinstance(text, float | int):
        return float(text)
    try:
        return float(text)
    except ValueError:
        return None


def _compare(value: str, op: str, wanted: str | float) -> bool:
    left, right = _number(value), _number(wanted)
    if left is not None and right is not None:
        a: float | str = left
        b: float | str = right
    else:
        a, b = value, str(wanted)
    if op == "eq":
        return a == b
    if op == "ne":
        return a != b
    if isinstance(a, float) != isinstance(b, float):
        return False
    if op == "lt":
        return a < b  # type: ignore[operator]
    if op == "le":
        return a <= b  # type: ignore[operator]
    if op == "gt":
        return a > b  # type: ignore[operator]
    return a >= b  # type: ignore[operator]


def _matches(predicate: Predicate, value: str | None) -> bool:
    if predicate.op == "present":
        return value is not None
    if predicate.op == "absent":
        return value is None
    if value is None:
        return False
    parts = value.split(";")
    if predicate.op == "in":
        assert isinstance(predicate.value, list)
        return any(p in predicate.value for p in parts)
    assert predicate.value is not None and not isinstance(predicate.value, list)
    wanted = predicate.value
    if predicate.op == "ne":
        return all(_compare(p, "ne", wanted) for p in parts)
    return any(_compare(p, predicate.op, wanted) for p in parts)


def _check_labels(labels: Sequence[str], source: _Source) -> None:
    unknown = [label for label in labels if label not in source.columns]
    if unknown:
        raise NotReleasedError("not released by this agreement: " + ", ".join(sorted(set(unknown))))


# Cohorts ----------------------------------------------------------------------------------


def release_cohort(
    store: Store,
    agreement: Agreement,
    request: CohortRequest,
    *,
    identity: Identity,
    pseudonym_master: bytes,
    now: datetime | None = None,
    rng: random.Random | None = None,
) -> CohortOut:
    """A pseudonymised cohort under an agreement the caller checked is active.

    Args:
        store: the broker's store.
        agreement: an active agreement naming the requester.
        request: datasets a person must be in, conditions, and fields to return.
        identity: the requester (for the audit entry).
        pseudonym_master: the broker's master secret of project pseudonyms.
        now: the time of the release (audit).
        rng: shuffles the rows (default: the system's secure random source).

    Raises:
        NotReleasedError: a dataset or field the request names is not in the agreement.
    """
    source = _source(store, agreement, today=now.date() if now else None)
    require = request.require if request.require is not None else list(source.datasets)
    outside = [d for d in require if d not in source.datasets]
    if outside:
        raise NotReleasedError("not in this agreement: dataset " + ", ".join(sorted(outside)))
    select = request.select if request.select is not None else list(source.columns)
    _check_labels([*select, *(p.field for p in request.where)], source)

    def read() -> tuple[list[list[str | None]], dict[str, int]]:
        counts: dict[str, int] = {}
        rows: list[list[str | None]] = []
        qualities = link_qualities(source.linkage, source.datasets)
        for person in _persons(source, counts):
            if not all(d in person.by_dataset for d in require):
                continue
            records = [r for d in source.datasets for r in person.by_dataset.get(d, [])]
            columns = source.columns
            if not all(_matches(p, _value(records, columns[p.field])) for p in request.where):
                continue
            pseudonym = derive_pseudonym(
                pseudonym_master,
                agreement_id=agreement.id,
                person_id=f"{source.domain}:{person.pid}",
            )
            values = [_value(records, source.columns[c]) for c in select]
            quality = qualities.weakest((r.dataset, r.ref) for r in records)
            rows.append([pseudonym, *values, quality])
        return rows, counts

    rows, counts = read_whole(store, source.domain, read)
    (rng or secrets.SystemRandom()).shuffle(rows)
    counts["rows"] = len(rows)
    counts["fields"] = len(select)
    _audit(store, identity, agreement, counts, now)
    columns = [PSEUDONYM_COLUMN, *select, LINK_QUALITY_COLUMN]
    return CohortOut(agreement=agreement.id, columns=columns, rows=rows)


# Aggregates -------------------------------------------------------------------------------


def round_count(count: int, base: int) -> int:
    """``count`` rounded to the nearest multiple of ``base`` (halves up); a count above
    zero never rounds to zero, so 0 stays the only exact value shown."""
    if count <= 0:
        return 0
    return max(base, (count + base // 2) // base * base)


@dataclass(frozen=True, slots=True)
class ProtectedTable:
    """A table with all its margins, and which entries are withheld.

    Attributes:
        counts: entry -> true count (entries absent are zero).
        suppressed: entries withheld.
    """

    counts: dict[Cell, int]
    suppressed: frozenset[Cell]


def _lines(cells: Mapping[Cell, int], dims: int) -> dict[tuple[int, Cell], list[Cell]]:
    """Every line of the table: along dimension ``k``, the categories and their margin."""
    lines: dict[tuple[int, Cell], list[Cell]] = {}
    for cell in cells:
        for k in range(dims):
            key = (k, cell[:k] + ("",) + cell[k + 1 :])
            lines.setdefault(key, []).append(cell)
    return lines


def _determined(
    unknowns: Sequence[Cell], lines: Mapping[tuple[int, Cell], list[Cell]]
) -> list[Cell]:
    """Withheld entries that the published entries determine exactly.

    Each line says: margin = sum of its categories. Over the withheld entries of a line
    that is a linear equation; an entry is determined when its unit vector lies in the
    row space of those equations (reduced row echelon form over a large prime field).
    """
    position = {cell: i for i, cell in enumerate(unknowns)}
    rows: list[dict[int, int]] = []
    for (k, _), members in lines.items():
        row: dict[int, int] = {}
        for cell in members:
            if cell in position:
                row[position[cell]] = 1 if cell[k] is None else _PRIME - 1
        if row:
            rows.append(row)
    pivots: dict[int, dict[int, int]] = {}
    holders: dict[int, set[int]] = {}  # column -> pivots whose reduced row uses it
    for row in sorted(rows, key=len):
        for col in [c for c in row if c in pivots]:
            factor = row.get(col, 0)
            if factor:
                for c, v in pivots[col].items():
                    row[c] = (row.get(c, 0) - factor * v) % _PRIME
                row = {c: v for c, v in row.items() if v}
        if not row:
            continue
        col = min(row, key=lambda c: len(holders.get(c, ())))
        inverse = pow(row[col], _PRIME - 2, _PRIME)
        row = {c: v * inverse % _PRIME for c, v in row.items()}
        for owner in list(holders.get(col, ())):
            other = pivots[owner]
            factor = other[col]
            for c, v in row.items():
                new = (other.get(c, 0) - factor * v) % _PRIME
                if new:
                    other[c] = new
                    holders.setdefault(c, set()).add(owner)
                else:
                    other.pop(c, None)
                    holders.get(c, set()).discard(owner)
        pivots[col] = row
        for c in row:
            holders.setdefault(c, set()).add(col)
    return [unknowns[col] for col, row in pivots.items() if len(row) == 1]


def protect_table(full: Mapping[tuple[str, ...], int], *, min_cell_size: int) -> ProtectedTable:
    """Primary and secondary suppression of a table and all its margins.

    Every entry (cell, margin or total) from 1 to ``min_cell_size - 1`` is withheld
    (primary). Then, while any withheld entry can be worked out exactly from the published
    ones — by a margin minus its other categories, or any combination of margins and
    totals (checked by linear algebra, :func:`_determined`) — the smallest published
    non-zero entry on one of its lines is withheld as well (secondary). Every query on the
    agreement reads the same protected table, so comparing two queries cannot undo it.

    Args:
        full: counts of the full cross-classification (coordinates without ``None``).
        min_cell_size: the smallest count shown.
    """
    dims = len(next(iter(full))) if full else 0
    counts: dict[Cell, int] = {}
    for coords, n in sorted(full.items()):
        for mask in product((False, True), repeat=dims):
            cell = tuple(None if m else v for v, m in zip(coords, mask, strict=True))
            counts[cell] = counts.get(cell, 0) + n
    if dims == 0:
        return ProtectedTable(counts, frozenset())
    suppressed = {c for c, n in counts.items() if 0 < n < min_cell_size}
    lines = _lines(counts, dims)
    by_cell: dict[Cell, list[tuple[int, Cell]]] = {}
    for key, members in lines.items():
        for cell in members:
            by_cell.setdefault(cell, []).append(key)
    while True:
        _complete_lines(suppressed, lines, by_cell, counts)
        relevant = {key: lines[key] for c in sorted(suppressed, key=_order) for key in by_cell[c]}
        found = _determined(sorted(suppressed, key=_order), relevant)
        added = False
        for cell in found:
            best = _complement(cell, suppressed, lines, by_cell, counts)
            if best is not None:
                suppressed.add(best)
                added = True
        if not added:
            break
    return ProtectedTable(counts, frozenset(suppressed))


def _complement(
    cell: Cell,
    suppressed: set[Cell],
    lines: Mapping[tuple[int, Cell], list[Cell]],
    by_cell: Mapping[Cell, list[tuple[int, Cell]]],
    counts: Mapping[Cell, int],
) -> Cell | None:
    """The published non-zero entry best withheld to protect ``cell``.

    One on ``cell``'s own lines if there is one; otherwise one on the lines of the
    withheld entries it shares a line with, and so on outwards.
    """
    frontier, seen = [cell], {cell}
    while frontier:
        best: Cell | None = None
        following: list[Cell] = []
        for current in frontier:
            for key in by_cell[current]:
                for other in lines[key]:
                    if other in suppressed:
                        if other not in seen:
                            seen.add(other)
                            following.append(other)
                    elif counts[other] and (
                        best is None or _rank(other, counts) < _rank(best, counts)
                    ):
                        best = other
        if best is not None:
            return best
        frontier = following
    return None


def _complete_lines(
    suppressed: set[Cell],
    lines: Mapping[tuple[int, Cell], list[Cell]],
    by_cell: Mapping[Cell, list[tuple[int, Cell]]],
    counts: Mapping[Cell, int],
) -> None:
    """The quick pass: until no line holds exactly one withheld entry, withhold a second."""
    queue = [key for c in sorted(suppressed, key=_order) for key in by_cell[c]]
    while queue:
        key = queue.pop()
        members = lines[key]
        withheld = [c for c in members if c in suppressed]
        if len(withheld) != 1:
            continue
        options = [c for c in members if c not in suppressed and counts[c]]
        if not options:
            continue
        best = min(options, key=lambda c: _rank(c, counts))
        suppressed.add(best)
        queue += by_cell[best]


def _order(cell: Cell) -> tuple[tuple[int, str], ...]:
    return tuple((1, "") if v is None else (0, v) for v in cell)


def _rank(cell: Cell, counts: Mapping[Cell, int]) -> tuple[int, int, tuple[tuple[int, str], ...]]:
    """Complement preference: categories before margins, then the smallest count."""
    margins = sum(1 for v in cell if v is None)
    return (margins, counts[cell], _order(cell))


def release_aggregate(
    store: Store,
    agreement: Agreement,
    request: AggregateRequest,
    *,
    identity: Identity,
    now: datetime | None = None,
) -> AggregateOut:
    """Counts by released fields over the agreement's population, protected.

    The population is every person with a record in a dataset of the agreement (less
    opt-outs where they apply); a person with no value for a field counts under ``""``.
    The table protected is the cross-classification by *every* released field of the
    agreement, so that all queries read one consistent table; a query returns the
    entries of its ``by`` fields with the margins over the others. The agreement's
    disclosure-control profile (:mod:`broker.disclosure`), if it names one, sets the
    smallest count shown and rounds what secondary suppression leaves published; the
    answer names the rule it applied.

    Raises:
        NotReleasedError: a ``by`` field is not released by the agreement.
        BadRequestError: a field is named twice.
    """
    source = _source(store, agreement, today=now.date() if now else None)
    _check_labels(request.by, source)
    if len(set(request.by)) != len(request.by):
        raise BadRequestError("a field is named twice in by")
    labels = list(source.columns)

    def read() -> tuple[dict[tuple[str, ...], int], dict[str, int]]:
        counts: dict[str, int] = {}
        full: dict[tuple[str, ...], int] = {}
        for person in _persons(source, counts):
            records = [r for d in source.datasets for r in person.by_dataset.get(d, [])]
            key = tuple(_value(records, source.columns[label]) or "" for label in labels)
            full[key] = full.get(key, 0) + 1
        return full, counts

    full, counts = read_whole(store, source.domain, read)
    persons = sum(full.values())
    terms = agreement.terms
    control = terms.aggregate_control
    profile = profile_of(terms)
    if profile is not None:
        table = protect_table(full, min_cell_size=profile.smallest_shown)
    elif control is AggregateControl.SUPPRESS:
        table = protect_table(full, min_cell_size=terms.min_cell_size)
    else:
        table = protect_table(full, min_cell_size=0)
    wanted = [labels.index(label) for label in request.by]
    cells: list[AggregateCell] = []
    for cell in sorted(table.counts, key=_order):
        if any(cell[i] is not None for i in range(len(labels)) if i not in wanted):
            continue
        values = [cell[i] for i in wanted]
        n = table.counts[cell]
        if cell in table.suppressed:
            cells.append(AggregateCell(values=values, count=None, suppressed=True))
        elif profile is not None:
            cells.append(AggregateCell(values=values, count=profile.published(n)))
        elif control is AggregateControl.ROUND:
            cells.append(AggregateCell(values=values, count=round_count(n, terms.rounding_base)))
        else:
            cells.append(AggregateCell(values=values, count=n))
    counts["persons"] = persons
    counts["cells"] = len(cells)
    counts["suppressed"] = sum(1 for c in cells if c.suppressed)
    _audit(store, identity, agreement, counts, now)
    if profile is not None:
        smallest, base, rule = profile.smallest_shown, _rounding_base(profile), profile.rule
    else:
        rounded = control is AggregateControl.ROUND
        smallest, base = terms.min_cell_size, terms.rounding_base if rounded else None
        rule = _legacy_rule(terms)
    return AggregateOut(
        agreement=agreement.id,
        by=list(request.by),
        control=control,
        min_cell_size=smallest,
        rounding_base=base,
        sdc_profile=profile.name if profile is not None else None,
        sdc_rule=rule,
        cells=cells,
    )


def _rounding_base(profile: DisclosureProfile) -> int | None:
    """The multiple a profile rounds to, for clients that show it (midpoint 6 is none)."""
    return NEAREST_BASE if profile.rounding is CountRounding.NEAREST_5 else None


def _legacy_rule(terms: AgreementTerms) -> str:
    """The rule of an agreement that names no profile, in one line."""
    if terms.aggregate_control is AggregateControl.ROUND:
        return f"every count rounded to the nearest {terms.rounding_base}, halves up"
    return f"counts from 1 to {terms.min_cell_size - 1} suppressed, others exact"


# Direct care ------------------------------------------------------------------------------


def release_linked(
    store: Store,
    agreement: Agreement,
    *,
    identity: Identity,
    now: datetime | None = None,
) -> LinkedOut:
    """For each of the requesting organisation's own references, the released attributes.

    Values of the organisation's own dataset come from that record itself; values of
    other datasets from the records linked to the same person. Only the organisation's
    own references appear; every row has every column (``None`` where nothing is linked),
    the last being the record's ``link_quality``.

    Raises:
        NotReleasedError: the organisation has no dataset in the agreement.
    """
    source = _source(store, agreement)
    own = [d for d in agreement.terms.datasets if d.org == identity.name]
    if not own:
        raise NotReleasedError("this agreement holds no dataset of yours")
    labels = list(source.columns)
    own_ids = {release.dataset_id: release.name for release in own}

    def read() -> tuple[list[LinkedRow], dict[str, int]]:
        counts: dict[str, int] = {"linked_rows": 0}
        rows: list[LinkedRow] = []
        qualities = link_qualities(source.linkage, source.datasets)
        for _, records in source.linkage.iter_persons():
            mine_all = [r for r in records if r.dataset in own_ids]
            if not mine_all:
                continue
            if any(r.dataset in source.opt_out for r in records):
                counts["opted_out"] = counts.get("opted_out", 0) + len(mine_all)
                continue
            for record in mine_all:
                others = [r for r in records if r.dataset != record.dataset]
                values: list[str | None] = []
                for label in labels:
                    column = source.columns[label]
                    held = [record] if column.dataset == record.dataset else others
                    values.append(_value(held, column))
                values.append(qualities.of(record.dataset, record.ref))
                if any(r.dataset in source.datasets for r in others):
                    counts["linked_rows"] += 1
                name = own_ids[record.dataset]
                rows.append(LinkedRow(dataset=name, ref=bytes(record.ref).hex(), values=values))
        return rows, counts

    rows, counts = read_whole(store, source.domain, read)
    rows.sort(key=lambda row: row.ref)  # no grouping by person
    counts["rows"] = len(rows)
    _audit(store, identity, agreement, counts, now)
    return LinkedOut(agreement=agreement.id, columns=[*labels, LINK_QUALITY_COLUMN], rows=rows)
