"""A configurable points score for risk of emergency admission, run at the practice.

The practice's linked file (``tessera-sdk linked``) holds, per local patient id, its own
attributes and those the direct-care agreement releases from other organisations (e.g.
the hospital's A&E attendances). A rules file says how many points each attribute earns;
the score is the sum, and the output lists the practice's patients at risk, highest
first, with the reasons. docs/risk.md explains the shipped example
(``client_sdk/data/risk_rules.toml``) and how to tune it.

Rules file::

    threshold = 4            # list patients scoring at least this (default 0: everyone)
    high = 8                 # label patients at or above this "high" (else "raised")

    [[rule]]
    name = "A&E attendances in 12 months"
    field = "AE_ATTENDANCES_12M"   # a column label, or its part after the last '.'
    per_unit = 1.0                 # points per unit of the value ...
    cap = 5                        # ... at most this many points

    [[rule]]
    name = "Frailty (eFI)"
    field = "FRAILTY_INDEX"
    bands = [{ at_least = 0.13, points = 1 }, { at_least = 0.25, points = 3 }]

A value that is missing or not a number earns nothing. A patient with several values for
one field (several linked records) has them added up.
"""

from __future__ import annotations

import csv
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from client_sdk.errors import InputError

__all__ = [
    "Band",
    "Rule",
    "RuleSet",
    "Scored",
    "load_rules",
    "read_linked",
    "score_patients",
]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Band(_Model):
    """Points for a value at or above ``at_least``."""

    at_least: float
    points: float


class Rule(_Model):
    """Points for one attribute: ``per_unit`` (up to ``cap``) or the highest ``bands`` hit."""

    name: Annotated[str, Field(min_length=1, max_length=100)]
    field: Annotated[str, Field(min_length=1, max_length=200)]
    per_unit: float | None = None
    cap: float | None = None
    bands: list[Band] | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Self:
        if (self.per_unit is None) == (self.bands is None):
            raise ValueError(f"rule {self.name!r}: give either per_unit or bands")
        return self

    def points(self, value: float) -> float:
        """Points this rule gives for ``value``."""
        if self.per_unit is not None:
            earned = value * self.per_unit
            return min(earned, self.cap) if self.cap is not None else earned
        hits = [b.points for b in self.bands or () if value >= b.at_least]
        return max(hits) if hits else 0.0


class RuleSet(_Model):
    """A rules file: rules, the listing threshold and the "high" label threshold."""

    threshold: float = 0.0
    high: float | None = None
    rule: Annotated[list[Rule], Field(min_length=1)]


@dataclass(frozen=True, slots=True)
class Scored:
    """One patient's score.

    Attributes:
        local_id: the practice's own patient id.
        dataset: the practice dataset it came from.
        score: total points.
        level: ``high`` or ``raised``.
        reasons: ``name: points`` of every rule that scored, highest first.
    """

    local_id: str
    dataset: str
    score: float
    level: str
    reasons: tuple[str, ...]


def load_rules(path: Path) -> RuleSet:
    """Read a rules file.

    Raises:
        InputError: not TOML, or the rules do not validate (every problem at once).
    """
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InputError(f"{path}: cannot read rules TOML ({exc})") from None
    try:
        return RuleSet.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ())) or "rules"
            problems.append(f"{where}: {err.get('msg', 'invalid')}")
        raise InputError(f"{path}: " + "; ".join(problems)) from None


def read_linked(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """A linked file's columns and rows (``local_id``, ``dataset``, then attributes).

    Raises:
        InputError: the file cannot be read or lacks ``local_id``.
    """
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            rows = list(reader)
            columns = list(reader.fieldnames or [])
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the linked file ({exc})") from None
    if "local_id" not in columns:
        raise InputError(f"{path}: no local_id column (is it from `tessera-sdk linked`?)")
    return columns, rows


def _column(rule: Rule, columns: Sequence[str]) -> list[str]:
    return [c for c in columns if c == rule.field or c.rsplit(".", 1)[-1] == rule.field]


def _number(text: str) -> float | None:
    total = 0.0
    found = False
    for part in text.lstrip("'").split(";"):
        try:
            total += float(part)
            found = True
        except ValueError:
            continue
    return total if found else None


def score_patients(
    rules: RuleSet, columns: Sequence[str], rows: Iterable[dict[str, str]]
) -> list[Scored]:
    """Score every row; those at or above the threshold, highest score first.

    Raises:
        InputError: a rule names a field that no column holds.
    """
    by_rule = {rule.name: _column(rule, columns) for rule in rules.rule}
    missing = [rule.field for rule in rules.rule if not by_rule[rule.name]]
    if missing:
        raise InputError("no column for rule field(s): " + ", ".join(missing))
    scored: list[Scored] = []
    for row in rows:
        earned: list[tuple[float, str]] = []
        for rule in rules.rule:
            values = [_number(row.get(c) or "") for c in by_rule[rule.name]]
            present = [v for v in values if v is not None]
            if not present:
                continue
            points = rule.points(sum(present))
            if points:
                earned.append((points, rule.name))
        score = round(sum(p for p, _ in earned), 3)
        if score < rules.threshold:
            continue
        high = rules.high is not None and score >= rules.high
        reasons = tuple(f"{name}: {points:g}" for points, name in sorted(earned, reverse=True))
        scored.append(
            Scored(
                row["local_id"],
                row.get("dataset", ""),
                score,
                "high" if high else "raised",
                reasons,
            )
        )
    scored.sort(key=lambda s: (-s.score, s.local_id))
    return scored
