"""Linkage specs: the ordered cascade of match keys a linkage domain agrees on.

A spec is TOML::

    name = "uk-health"
    description = "..."

    [[match_keys]]
    name = "nhs_dob"
    fields = ["nhs_number", "date_of_birth"]

    [[match_keys]]
    name = "nhs_family_initial"
    fields = ["nhs_number", "family_name:nysiis", { field = "given_name", transform = "initial" }]

    [[match_keys]]
    name = "names_unordered_dob_postcode"
    fields = ["{given_name, family_name}", "date_of_birth", "postcode"]

    [[blocking_keys]]
    name = "dob"
    fields = ["date_of_birth"]

    [[comparisons]]
    name = "given"
    field = "given_name"
    levels = ["exact", "nickname", "nysiis", "initial"]

Each field is a canonical identifier of the normalised record, optionally followed by one
transform (``field:transform`` or a table). An *unordered group* of two or more fields
(``"{a, b}"`` or ``{ unordered = ["a", "b"] }``, each part with its own optional
transform) compares their values as a set: the parts' encoded values are sorted before
they are joined, so a record with the values the other way round (given and family names
swapped between fields) has the same token. Match keys are listed strongest first: the
broker prefers the earliest key when two disagree.

*Blocking keys* and *comparisons* are the evidence of the probabilistic stage
(docs/probabilistic.md): a blocking key is written like a match key but is too weak to
link on; it only makes two records that share its token a *candidate pair*. A comparison
names one field and its *levels*, strongest first (``exact``, then coarser agreements such
as ``nickname`` (a name group in common: a name in two groups has a token for each),
``nysiis``, ``initial``, ``part``, ``swap``, ``one_digit``,
``transpose``, ``one_word``, ``one_edit``, ``joined``, ``year_month``, ``year``,
``assigned_year`` (the year, against a date on a day the extract assigns to unknown
birthdays), ``sector``, ``district``). A comparison may also name a ``with_field``, a
second name field that only its two-field levels read: ``either_order`` and
``either_order_soundex`` compare the two names as an unordered pair, for names entered
in each other's fields; ``any_given`` (``with_field = "middle_names"``) the given and
middle names as a set, for someone known by a middle name (these three last in the
list); ``joined_middle`` (``with_field = "middle_names"``, anywhere in the list) the
given name joined to the first middle name, for a name written as one word in one
record and two in the other (ANNEMARIE, ANNE MARIE). The SDK
derives one short token per comparison level *under each blocking key* (the block's
values are inside the HMAC), so two records can compare a field only inside a block they
share. A comparison on a field
that a blocking key holds untransformed is not derived under that key (inside the block
it always agrees).

The *content hash* identifies a spec: SHA-256 over the canonical JSON of the match keys
(names, fields and transforms, in order), and of the blocking keys and comparisons when
the spec has any. The name and description are labels and do not
change it, so renaming a spec does not invalidate a domain's tokens; any change to a key
does, and the broker refuses a batch tokenised under another spec than its dataset's.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from keys.chunk import MAX_KEYS
from keys.errors import SpecError

__all__ = [
    "DEFAULT_SPEC_NAME",
    "FIELD_NAMES",
    "LEVELS",
    "MAX_BLOCKING_KEYS",
    "MAX_COMPARISONS",
    "MAX_LEVELS",
    "PAIR_LEVELS",
    "PROBABILISTIC_SPEC_NAME",
    "TRANSFORMS",
    "BlockingKey",
    "Comparison",
    "EvidenceColumn",
    "FieldName",
    "KeyField",
    "LevelName",
    "LinkageSpec",
    "MatchKey",
    "TransformName",
    "UnorderedFields",
    "default_spec",
    "load_spec",
    "parse_spec",
    "resolve_spec",
    "shipped_spec_names",
]

DEFAULT_SPEC_NAME = "uk-health"
PROBABILISTIC_SPEC_NAME = "uk-health-probabilistic"
"""The shipped spec that adds the probabilistic stage's blocking keys and comparisons."""

FieldName = Literal[
    "nhs_number",
    "given_name",
    "given_name_key",
    "middle_names",
    "family_name",
    "date_of_birth",
    "sex",
    "postcode",
    "address_line",
    "other_id",
    "locality",
    "region",
    "date_of_birth_raw",
]
FIELD_NAMES: tuple[str, ...] = FieldName.__args__  # type: ignore[attr-defined]

TransformName = Literal[
    "initial",
    "soundex",
    "nysiis",
    "metaphone",
    "nickname",
    "year",
    "swap",
    "district",
    "sector",
    "prefix2",
    "prefix3",
]
TRANSFORMS: tuple[str, ...] = TransformName.__args__  # type: ignore[attr-defined]

# Which transforms make sense on which fields: anything else is a spec error.
_NAME_FIELDS = frozenset({"given_name", "given_name_key", "middle_names", "family_name"})
_SPOKEN_FIELDS = _NAME_FIELDS | {"locality"}  # phonetic codes: names and place names
_ALLOWED: dict[str, frozenset[str]] = {
    "initial": _NAME_FIELDS,
    "soundex": _SPOKEN_FIELDS,
    "nysiis": _SPOKEN_FIELDS,
    "metaphone": _SPOKEN_FIELDS,
    "nickname": _NAME_FIELDS,
    "year": frozenset({"date_of_birth"}),
    "swap": frozenset({"date_of_birth"}),
    "district": frozenset({"postcode"}),
    "sector": frozenset({"postcode"}),
    "prefix2": frozenset({"postcode"}),
    "prefix3": frozenset({"postcode"}),
}
_KEY_NAME = re.compile(r"^[a-z][a-z0-9_]{0,47}$")

LevelName = Literal[
    "exact",
    "nickname",
    "soundex",
    "nysiis",
    "metaphone",
    "initial",
    "part",
    "swap",
    "one_digit",
    "transpose",
    "one_word",
    "one_edit",
    "joined",
    "year_month",
    "year",
    "assigned_year",
    "sector",
    "district",
    "either_order",
    "either_order_soundex",
    "any_given",
    "joined_middle",
]
LEVELS: tuple[str, ...] = LevelName.__args__  # type: ignore[attr-defined]
# Which comparison levels make sense on which fields: anything else is a spec error.
_LEVEL_ALLOWED: dict[str, frozenset[str]] = {
    "exact": frozenset(FIELD_NAMES),
    "nickname": _NAME_FIELDS,
    "soundex": _NAME_FIELDS,
    "nysiis": _NAME_FIELDS,
    "metaphone": _NAME_FIELDS,
    "initial": _NAME_FIELDS,
    "part": _NAME_FIELDS,
    "swap": frozenset({"date_of_birth"}),
    "one_digit": frozenset({"date_of_birth", "nhs_number", "other_id", "postcode"}),
    "transpose": frozenset({"date_of_birth", "nhs_number", "other_id", "postcode"}),
    "one_word": frozenset({"address_line"}),
    "one_edit": _NAME_FIELDS,
    "joined": _NAME_FIELDS,
    "year_month": frozenset({"date_of_birth"}),
    "year": frozenset({"date_of_birth"}),
    "assigned_year": frozenset({"date_of_birth"}),
    "sector": frozenset({"postcode"}),
    "district": frozenset({"postcode"}),
    "either_order": _NAME_FIELDS,
    "either_order_soundex": _NAME_FIELDS,
    "any_given": frozenset({"given_name", "given_name_key"}),
    "joined_middle": frozenset({"given_name", "given_name_key"}),
}
PAIR_LEVELS = frozenset({"either_order", "either_order_soundex", "any_given", "joined_middle"})
"""Levels that read two fields: the comparison's ``field`` and its ``with_field``."""
_LAST_LEVELS = frozenset({"either_order", "either_order_soundex", "any_given"})
"""Two-field levels that come after every one-field level (:func:`_check_with_field`)."""
_MIDDLE_NAME_LEVELS = frozenset({"any_given", "joined_middle"})
"""Two-field levels that read the middle names: ``with_field = "middle_names"``."""
MAX_BLOCKING_KEYS = 8
MAX_COMPARISONS = 16
MAX_LEVELS = 8


class KeyField(BaseModel):
    """One field of a match key, with at most one transform."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    field: FieldName
    transform: TransformName | None = None

    def label(self) -> str:
        """``field`` or ``field:transform``, as a spec file writes it."""
        return self.field if self.transform is None else f"{self.field}:{self.transform}"

    def canonical(self) -> dict[str, Any]:
        """The field as the content hash covers it."""
        return {"field": self.field, "transform": self.transform}


class UnorderedFields(BaseModel):
    """Two or more fields compared as an unordered set: either order gives the same token.

    The parts are kept in a canonical order (by field, then transform), so ``{a, b}`` and
    ``{b, a}`` are the same group with the same content hash.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    unordered: tuple[KeyField, ...]

    def label(self) -> str:
        """``{field, field:transform}``, as a spec file writes it."""
        return "{" + ", ".join(part.label() for part in self.unordered) + "}"

    def canonical(self) -> dict[str, Any]:
        """The group as the content hash covers it: its parts, in canonical order."""
        return {"unordered": [part.canonical() for part in self.unordered]}


class MatchKey(BaseModel):
    """A named list of fields: one token per record when every field is present."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    fields: tuple[KeyField | UnorderedFields, ...]
    description: str = ""

    @property
    def leaves(self) -> tuple[KeyField, ...]:
        """Every single field of the key, those inside unordered groups included, in order."""
        out: list[KeyField] = []
        for f in self.fields:
            out.extend(f.unordered if isinstance(f, UnorderedFields) else (f,))
        return tuple(out)


class BlockingKey(MatchKey):
    """A key that makes candidate pairs for the probabilistic stage, never a link by itself."""


class Comparison(BaseModel):
    """One field compared at ordered levels, strongest first (``exact`` usually leads).

    ``with_field`` is the second field that the two-field levels (:data:`PAIR_LEVELS`:
    the given and family names in either order) read beside ``field``; it is set exactly
    when the comparison has such a level.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    field: FieldName
    levels: tuple[LevelName, ...]
    with_field: FieldName | None = None
    description: str = ""

    @property
    def fields(self) -> tuple[FieldName, ...]:
        """The fields the comparison reads: ``field``, then ``with_field`` when set."""
        return (self.field,) if self.with_field is None else (self.field, self.with_field)

    def canonical(self) -> dict[str, Any]:
        """The comparison as the content hash covers it (``with_field`` only when set)."""
        out: dict[str, Any] = {"name": self.name, "field": self.field, "levels": list(self.levels)}
        if self.with_field is not None:
            out["with_field"] = self.with_field
        return out


@dataclass(frozen=True, slots=True)
class EvidenceColumn:
    """One comparison level under one blocking key: a column of comparison tokens.

    Attributes:
        block: index of the blocking key in the spec.
        comparison: index of the comparison in the spec.
        level: index of the level in the comparison (0 = strongest).
    """

    block: int
    comparison: int
    level: int


class LinkageSpec(BaseModel):
    """An ordered cascade of match keys, strongest first, and the probabilistic evidence."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    description: str = ""
    match_keys: tuple[MatchKey, ...]
    blocking_keys: tuple[BlockingKey, ...] = ()
    comparisons: tuple[Comparison, ...] = ()

    def comparisons_under(self, block: int) -> tuple[int, ...]:
        """Indices of the comparisons derived under blocking key ``block``.

        A comparison whose field the blocking key holds untransformed always agrees
        exactly inside the block, so it is left out (it would only cost tokens).
        """
        fixed = {f.field for f in self.blocking_keys[block].leaves if f.transform is None}
        return tuple(i for i, c in enumerate(self.comparisons) if c.field not in fixed)

    @property
    def evidence_columns(self) -> tuple[EvidenceColumn, ...]:
        """Every comparison token column, by blocking key, then comparison, then level."""
        return tuple(
            EvidenceColumn(block, c, level)
            for block in range(len(self.blocking_keys))
            for c in self.comparisons_under(block)
            for level in range(len(self.comparisons[c].levels))
        )

    @property
    def key_names(self) -> list[str]:
        """Match key names, strongest first."""
        return [k.name for k in self.match_keys]

    def canonical(self) -> dict[str, Any]:
        """The content that the hash covers: match keys, fields and transforms, in order.

        A spec with blocking keys and comparisons is format 2 and adds them; a spec
        without keeps format 1 and the hash it always had.
        """
        out: dict[str, Any] = {
            "format": 1,
            "match_keys": [
                {"name": k.name, "fields": [f.canonical() for f in k.fields]}
                for k in self.match_keys
            ],
        }
        if self.blocking_keys or self.comparisons:
            out["format"] = 2
            out["blocking_keys"] = [
                {"name": k.name, "fields": [f.canonical() for f in k.fields]}
                for k in self.blocking_keys
            ]
            out["comparisons"] = [c.canonical() for c in self.comparisons]
        return out

    @property
    def content_hash(self) -> str:
        """``sha256:`` and the hex SHA-256 of the canonical JSON (sorted keys, no spaces)."""
        text = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"))
        return "sha256:" + hashlib.sha256(text.encode()).hexdigest()

    def to_toml(self) -> str:
        """The spec written back as TOML (labels included)."""
        lines = [f"name = {json.dumps(self.name)}"]
        if self.description:
            lines.append(f"description = {json.dumps(self.description)}")
        for key in self.match_keys:
            lines += ["", "[[match_keys]]", f"name = {json.dumps(key.name)}"]
            fields = ", ".join(json.dumps(f.label()) for f in key.fields)
            lines.append(f"fields = [{fields}]")
            if key.description:
                lines.append(f"description = {json.dumps(key.description)}")
        for block in self.blocking_keys:
            lines += ["", "[[blocking_keys]]", f"name = {json.dumps(block.name)}"]
            fields = ", ".join(json.dumps(f.label()) for f in block.fields)
            lines.append(f"fields = [{fields}]")
            if block.description:
                lines.append(f"description = {json.dumps(block.description)}")
        for comparison in self.comparisons:
            lines += ["", "[[comparisons]]", f"name = {json.dumps(comparison.name)}"]
            lines.append(f"field = {json.dumps(comparison.field)}")
            lines.append(f"levels = {json.dumps(list(comparison.levels))}")
            if comparison.with_field is not None:
                lines.append(f"with_field = {json.dumps(comparison.with_field)}")
            if comparison.description:
                lines.append(f"description = {json.dumps(comparison.description)}")
        return "\n".join(lines) + "\n"


def _parse_single(raw: Any, where: str, problems: list[str]) -> KeyField | None:
    if isinstance(raw, str):
        field, _, transform = raw.partition(":")
        data: dict[str, Any] = {"field": field.strip()}
        if transform:
            data["transform"] = transform.strip()
    elif isinstance(raw, dict):
        data = raw
    else:
        problems.append(f"{where}: a field is a string 'field[:transform]' or a table")
        return None
    unknown = set(data) - {"field", "transform"}
    if unknown:
        problems.append(f"{where}: unknown entries {sorted(unknown)}")
    field_name = data.get("field")
    transform_name = data.get("transform")
    ok = True
    if field_name not in FIELD_NAMES:
        problems.append(f"{where}: unknown field {field_name!r} (one of {', '.join(FIELD_NAMES)})")
        ok = False
    if transform_name is not None and transform_name not in TRANSFORMS:
        problems.append(
            f"{where}: unknown transform {transform_name!r} (one of {', '.join(TRANSFORMS)})"
        )
        ok = False
    if ok and transform_name is not None and field_name not in _ALLOWED[transform_name]:
        problems.append(f"{where}: transform {transform_name!r} does not apply to {field_name!r}")
        ok = False
    if not ok or unknown:
        return None
    return KeyField(field=field_name, transform=transform_name)


def _parse_field(raw: Any, where: str, problems: list[str]) -> KeyField | UnorderedFields | None:
    """One entry of a key's ``fields``: a single field or an unordered group of fields."""
    if isinstance(raw, str) and raw.strip().startswith("{"):
        text = raw.strip()
        if not text.endswith("}"):
            problems.append(f"{where}: an unordered group is written '{{field, field}}'")
            return None
        raw_parts: Any = text[1:-1].split(",")
    elif isinstance(raw, dict) and "unordered" in raw:
        unknown = set(raw) - {"unordered"}
        if unknown:
            problems.append(f"{where}: unknown entries {sorted(unknown)}")
            return None
        raw_parts = raw["unordered"]
    else:
        return _parse_single(raw, where, problems)
    if not isinstance(raw_parts, list) or len(raw_parts) < 2:
        problems.append(f"{where}: an unordered group needs at least two fields")
        return None
    parts: list[KeyField] = []
    for k, raw_part in enumerate(raw_parts, start=1):
        if isinstance(raw_part, dict) and "unordered" in raw_part:
            problems.append(f"{where} part {k}: unordered groups do not nest")
            continue
        part = _parse_single(raw_part, f"{where} part {k}", problems)
        if part is not None:
            parts.append(part)
    if len(parts) != len(raw_parts):
        return None
    if len(set(parts)) != len(parts):
        problems.append(f"{where}: a field is listed twice in an unordered group")
        return None
    ordered = sorted(parts, key=lambda p: (p.field, p.transform or ""))
    return UnorderedFields(unordered=tuple(ordered))


def _parse_keys(
    raw_keys: list[Any], kind: str, problems: list[str], *, blocking: bool
) -> list[MatchKey]:
    """The ``[[match_keys]]`` or ``[[blocking_keys]]`` tables, every problem collected."""
    keys: list[MatchKey] = []
    seen_names: set[str] = set()
    seen_fields: dict[tuple[KeyField | UnorderedFields, ...], str] = {}
    for i, raw in enumerate(raw_keys, start=1):
        where = f"{kind} {i}"
        if not isinstance(raw, dict):
            problems.append(f"{where}: must be a table")
            continue
        key_name = raw.get("name")
        if not isinstance(key_name, str) or not _KEY_NAME.match(key_name):
            problems.append(
                f"{where}: 'name' must be lower-case letters, digits and _ "
                "(starting with a letter, at most 48)"
            )
            key_name = None
        else:
            where = f"{kind} {i} ({key_name})"
            if key_name in seen_names:
                problems.append(f"{where}: duplicate name")
            seen_names.add(key_name)
        extra = set(raw) - {"name", "fields", "description"}
        if extra:
            problems.append(f"{where}: unknown entries {sorted(extra)}")
        raw_fields = raw.get("fields")
        if not isinstance(raw_fields, list) or not raw_fields:
            problems.append(f"{where}: 'fields' must be a non-empty list")
            continue
        fields: list[KeyField | UnorderedFields] = []
        for j, raw_field in enumerate(raw_fields, start=1):
            parsed = _parse_field(raw_field, f"{where} field {j}", problems)
            if parsed is not None:
                fields.append(parsed)
        if len(fields) != len(raw_fields):
            continue
        leaves = [
            leaf
            for f in fields
            for leaf in (f.unordered if isinstance(f, UnorderedFields) else (f,))
        ]
        if len(set(leaves)) != len(leaves):
            problems.append(f"{where}: a field is listed twice")
        key_description = raw.get("description", "")
        if not isinstance(key_description, str):
            problems.append(f"{where}: 'description' must be a string")
            key_description = ""
        canon = tuple(fields)
        if canon in seen_fields:
            problems.append(f"{where}: same fields as {seen_fields[canon]}")
        if key_name is not None:
            seen_fields[canon] = key_name
            model = BlockingKey if blocking else MatchKey
            keys.append(model(name=key_name, fields=canon, description=key_description))
    return keys


def _parse_comparisons(raw_list: list[Any], problems: list[str]) -> list[Comparison]:
    """The ``[[comparisons]]`` tables, every problem collected."""
    out: list[Comparison] = []
    seen: set[str] = set()
    for i, raw in enumerate(raw_list, start=1):
        where = f"comparison {i}"
        if not isinstance(raw, dict):
            problems.append(f"{where}: must be a table")
            continue
        name = raw.get("name")
        ok = True
        if not isinstance(name, str) or not _KEY_NAME.match(name):
            problems.append(
                f"{where}: 'name' must be lower-case letters, digits and _ "
                "(starting with a letter, at most 48)"
            )
            ok = False
        else:
            where = f"comparison {i} ({name})"
            if name in seen:
                problems.append(f"{where}: duplicate name")
                ok = False
            seen.add(name)
        extra = set(raw) - {"name", "field", "levels", "with_field", "description"}
        if extra:
            problems.append(f"{where}: unknown entries {sorted(extra)}")
            ok = False
        field_name = raw.get("field")
        if field_name not in FIELD_NAMES:
            problems.append(
                f"{where}: unknown field {field_name!r} (one of {', '.join(FIELD_NAMES)})"
            )
            ok = False
        levels = raw.get("levels")
        if not isinstance(levels, list) or not 1 <= len(levels) <= MAX_LEVELS:
            problems.append(f"{where}: 'levels' must be a list of 1 to {MAX_LEVELS} levels")
            levels = []
            ok = False
        for level in levels:
            if level not in LEVELS:
                problems.append(f"{where}: unknown level {level!r} (one of {', '.join(LEVELS)})")
                ok = False
            elif field_name in FIELD_NAMES and field_name not in _LEVEL_ALLOWED[level]:
                problems.append(f"{where}: level {level!r} does not apply to {field_name!r}")
                ok = False
        if len(set(map(str, levels))) != len(levels):
            problems.append(f"{where}: a level is listed twice")
            ok = False
        with_field = raw.get("with_field")
        ok = _check_with_field(where, field_name, with_field, levels, problems) and ok
        description = raw.get("description", "")
        if not isinstance(description, str):
            problems.append(f"{where}: 'description' must be a string")
            ok = False
        if ok:
            out.append(
                Comparison(
                    name=str(name),
                    field=field_name,
                    levels=tuple(levels),
                    with_field=with_field,
                    description=str(description),
                )
            )
    return out


def _check_with_field(
    where: str, field_name: Any, with_field: Any, levels: list[Any], problems: list[str]
) -> bool:
    """A two-field level needs ``with_field``, another name field; nothing else takes one."""
    pair = [level for level in levels if level in PAIR_LEVELS]
    if with_field is None:
        if pair:
            problems.append(f"{where}: level {pair[0]!r} needs 'with_field', a second name field")
        return not pair
    if with_field not in _NAME_FIELDS:
        problems.append(
            f"{where}: 'with_field' must be a name field (one of {', '.join(sorted(_NAME_FIELDS))})"
        )
        return False
    if with_field == field_name:
        problems.append(f"{where}: 'with_field' must differ from 'field'")
        return False
    middle = [level for level in pair if level in _MIDDLE_NAME_LEVELS]
    if middle and with_field != "middle_names":
        problems.append(
            f"{where}: level {middle[0]!r} reads the middle names: with_field = 'middle_names'"
        )
        return False
    if not pair:
        problems.append(
            f"{where}: 'with_field' is read only by the levels {', '.join(sorted(PAIR_LEVELS))}"
        )
        return False
    last = [level for level in levels if level in _LAST_LEVELS]
    if last and any(level not in _LAST_LEVELS for level in levels[levels.index(last[0]) :]):
        # Last, these agree only where every one-field level disagrees: for names, only
        # when they were entered in each other's fields or one is known by a middle name.
        # joined_middle is a spelling of the same name and may stand where its strength
        # belongs (client_sdk.evidence lays the levels out in the spec's order).
        problems.append(f"{where}: the levels {', '.join(sorted(_LAST_LEVELS))} come last")
        return False
    return True


def parse_spec(data: dict[str, Any], *, source: str = "<spec>") -> LinkageSpec:
    """Validate a spec from its TOML table, collecting every problem before raising.

    Raises:
        SpecError: listing every problem found, by match key position and name.
    """
    problems: list[str] = []
    unknown = set(data) - {"name", "description", "match_keys", "blocking_keys", "comparisons"}
    if unknown:
        problems.append(f"unknown top-level entries {sorted(unknown)}")
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        problems.append("'name' is required (a non-empty string)")
    description = data.get("description", "")
    if not isinstance(description, str):
        problems.append("'description' must be a string")
    raw_keys = data.get("match_keys")
    if not isinstance(raw_keys, list) or not raw_keys:
        problems.append("at least one [[match_keys]] table is required")
        raw_keys = []
    if len(raw_keys) > MAX_KEYS:
        problems.append(f"at most {MAX_KEYS} match keys (found {len(raw_keys)})")
    keys = _parse_keys(raw_keys, "match key", problems, blocking=False)
    raw_blocks = data.get("blocking_keys", [])
    raw_comparisons = data.get("comparisons", [])
    if not isinstance(raw_blocks, list):
        problems.append("'blocking_keys' must be a list of [[blocking_keys]] tables")
        raw_blocks = []
    if not isinstance(raw_comparisons, list):
        problems.append("'comparisons' must be a list of [[comparisons]] tables")
        raw_comparisons = []
    if len(raw_blocks) > MAX_BLOCKING_KEYS:
        problems.append(f"at most {MAX_BLOCKING_KEYS} blocking keys (found {len(raw_blocks)})")
    if len(raw_comparisons) > MAX_COMPARISONS:
        problems.append(f"at most {MAX_COMPARISONS} comparisons (found {len(raw_comparisons)})")
    if bool(raw_blocks) != bool(raw_comparisons):
        problems.append("blocking keys and comparisons come together: a spec has both or neither")
    blocks = _parse_keys(raw_blocks, "blocking key", problems, blocking=True)
    comparisons = _parse_comparisons(raw_comparisons, problems)
    key_names = {k.name for k in keys}
    for block in blocks:
        if block.name in key_names:
            problems.append(f"blocking key {block.name}: a match key has the same name")
    if problems:
        raise SpecError(source, problems)
    try:
        return LinkageSpec(
            name=str(name),
            description=str(description),
            match_keys=tuple(keys),
            blocking_keys=tuple(b for b in blocks if isinstance(b, BlockingKey)),
            comparisons=tuple(comparisons),
        )
    except ValidationError as exc:  # pragma: no cover - the checks above are complete
        raise SpecError(source, [str(e["msg"]) for e in exc.errors()]) from exc


def load_spec(path: Path) -> LinkageSpec:
    """Read and validate a spec TOML file.

    Raises:
        SpecError: the file cannot be read, is not TOML, or does not validate.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(str(path), [f"cannot read the file ({type(exc).__name__})"]) from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(str(path), [f"not valid TOML: {exc}"]) from exc
    return parse_spec(data, source=str(path))


def default_spec(name: str = DEFAULT_SPEC_NAME) -> LinkageSpec:
    """A spec shipped with Tessera (``keys/specs/NAME.toml``); the UK health spec by default.

    Raises:
        SpecError: no shipped spec has that name.
    """
    ref = resources.files("keys").joinpath("specs", f"{name}.toml")
    if not re.fullmatch(r"[a-z0-9-]+", name) or not ref.is_file():
        raise SpecError(name, ["no shipped spec of that name"])
    data = tomllib.loads(ref.read_text(encoding="utf-8"))
    return parse_spec(data, source=f"shipped spec {name}")


def shipped_spec_names() -> list[str]:
    """The names of the specs shipped with Tessera (``keys/specs/*.toml``), sorted."""
    return sorted(
        ref.name.removesuffix(".toml")
        for ref in resources.files("keys").joinpath("specs").iterdir()
        if ref.name.endswith(".toml")
    )


def resolve_spec(ref: Path) -> LinkageSpec:
    """The spec in file ``ref``, or else the shipped spec that a bare name ``ref`` names.

    So ``--spec uk-health-probabilistic`` works from a ``pip install``, where the shipped
    TOML files sit inside the installed package. Anything with a directory or a suffix is
    read as a file.

    Raises:
        SpecError: no such file, and no shipped spec of that name.
    """
    if ref.is_file() or str(ref) != ref.name or ref.suffix:
        return load_spec(ref)
    shipped = shipped_spec_names()
    if ref.name not in shipped:
        raise SpecError(
            str(ref),
            [f"no such file, and no shipped spec of that name (shipped: {', '.join(shipped)})"],
        )
    return default_spec(ref.name)
