"""The documented list of placeholder values (client_sdk/data/placeholders.toml).

Placeholders are defaults and "unknown" markers that systems store instead of a value.
They are missing values: tokenising ``0000000000`` or ``1900-01-01`` would link strangers.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable
from importlib import resources

__all__ = [
    "PLACEHOLDER_DATES",
    "PLACEHOLDER_GENERIC",
    "PLACEHOLDER_NAMES",
    "PLACEHOLDER_NAME_PAIRS",
    "PLACEHOLDER_NAME_PAIR_FAMILIES",
    "PLACEHOLDER_NAME_PREFIXES",
    "PLACEHOLDER_NHS_NUMBERS",
    "PLACEHOLDER_PAYLOAD",
    "PLACEHOLDER_POSTCODE_OUTWARD",
    "is_placeholder_date_text",
    "is_placeholder_generic",
    "is_placeholder_name",
    "is_placeholder_name_pair",
    "payload_value",
    "rests_on_day_of_birth",
]


def _load() -> dict[str, list[str]]:
    text = resources.files("client_sdk").joinpath("data/placeholders.toml").read_text("utf-8")
    data: dict[str, list[str]] = tomllib.loads(text)
    return data


_DATA = _load()

PLACEHOLDER_NAMES: frozenset[str] = frozenset(_DATA["names"])
PLACEHOLDER_NAME_PREFIXES: frozenset[str] = frozenset(_DATA["name_prefixes"])
PLACEHOLDER_GENERIC: frozenset[str] = frozenset(_DATA["generic"])
PLACEHOLDER_NHS_NUMBERS: frozenset[str] = frozenset(
    list(_DATA["nhs_numbers"]) + [str(d) * 9 + str(c) for d in range(10) for c in range(10)]
)
"""Listed numbers, and every number whose first nine digits are one repeated digit."""
PLACEHOLDER_DATES: frozenset[str] = frozenset(_DATA["dates"])
PLACEHOLDER_POSTCODE_OUTWARD: frozenset[str] = frozenset(_DATA["postcode_outward"])
PLACEHOLDER_PAYLOAD: frozenset[str] = frozenset(_DATA["payload"])
"""How export tools write a null (``NULL``, ``N/A``, ``#N/A``, ``NaN``), after cleaning."""
_PAYLOAD_LONGEST = 8  # no longer raw spelling of a null marker: "(null)", "<NULL>", "#N/A"
_NOT_ALNUM = re.compile(r"[^A-Z0-9]+")


def _one_repeated_letter(word: str) -> bool:
    return len(word) >= 2 and word == word[0] * len(word)


def is_placeholder_name(tokens: list[str]) -> bool:
    """Whether cleaned name words (upper case, no punctuation) are a placeholder.

    Args:
        tokens: the words of the name after cleaning, e.g. ``["BABY", "OF", "SMITH"]``.

    Returns:
        True for a listed value, a value whose first word is a listed prefix followed by
        more words (``BABY OF SMITH``), or a value made of one repeated letter (``XX``).
    """
    if not tokens:
        return False
    if " ".join(tokens) in PLACEHOLDER_NAMES:
        return True
    if len(tokens) > 1 and tokens[0] in PLACEHOLDER_NAME_PREFIXES:
        return True
    return all(_one_repeated_letter(t) for t in tokens)


def _name_pairs() -> frozenset[tuple[str, str]]:
    """Two-word placeholder names whose words are not placeholders alone (JOHN DOE)."""
    pairs: set[tuple[str, str]] = set()
    for name in PLACEHOLDER_NAMES:
        words = name.split()
        if len(words) == 2 and not any(is_placeholder_name([w]) for w in words):
            pairs.add((words[0], words[1]))
    return frozenset(pairs)


PLACEHOLDER_NAME_PAIRS: frozenset[tuple[str, str]] = _name_pairs()
"""(given, family) pairs that are a placeholder together (``JOHN DOE``, ``JANE DOE``)."""
PLACEHOLDER_NAME_PAIR_FAMILIES: frozenset[str] = frozenset(f for _, f in PLACEHOLDER_NAME_PAIRS)
"""The family names of :data:`PLACEHOLDER_NAME_PAIRS`: a cheap first test per record."""


def is_placeholder_name_pair(given: str, middle: str | None, family: str) -> bool:
    """Whether normalised given, middle and family names together are a placeholder.

    A whole name written in one column (``John Doe``) is a placeholder by
    :func:`is_placeholder_name`; this says the same of the name in given and family
    columns, so that both layouts treat one person alike. A middle name makes it a name.
    """
    return middle is None and (given, family) in PLACEHOLDER_NAME_PAIRS


def is_placeholder_date_text(text: str) -> bool:
    """Whether a date that does not parse is only zeros (``00000000``, ``00/00/0000``).

    Systems write all zeros for "date not known", as they write 1900-01-01.
    """
    digits = _NOT_ALNUM.sub("", text.upper())
    return bool(digits) and not digits.strip("0")


def is_placeholder_generic(words: str) -> bool:
    """Whether a cleaned value (upper case, punctuation as single spaces) means "missing"."""
    return words in PLACEHOLDER_GENERIC


def payload_value(raw: str) -> str | None:
    """A payload cell as it leaves: stripped, or ``None`` when empty or a null marker.

    Only the markers export tools write for a database null (:data:`PLACEHOLDER_PAYLOAD`)
    become ``None``; answers such as ``Not stated``, ``Unknown`` or ``None`` are data.

    Args:
        raw: the cell as read, e.g. ``" NULL "`` or ``"3"``.

    Returns:
        e.g. ``None`` or ``"3"``.
    """
    value = raw.strip()
    if not value:
        return None
    if len(value) <= _PAYLOAD_LONGEST and not value.isdigit():
        if " ".join(_NOT_ALNUM.sub(" ", value.upper()).split()) in PLACEHOLDER_PAYLOAD:
            return None
    return value


_IDENTIFIERS = frozenset({"nhs_number", "other_id"})
_GIVEN = frozenset({"given_name", "given_name_key"})
_DAY_TRANSFORMS = (None, "swap")  # the transforms of a date of birth that keep its day


def rests_on_day_of_birth(fields: Iterable[tuple[str, str | None]]) -> bool:
    """Whether a match key of these ``(field, transform)`` leaves needs a known birthday.

    A key that holds the date of birth with its day (untransformed, or day and month
    unordered) but no identifier (NHS number, other id) and not both a given and a family
    name tells people apart by the day they were born: the given name, postcode and sex
    of ``given_dob_postcode_sex`` are shared by many residents of one hostel. On a date
    of birth that the extract's system assigned (:func:`client_sdk.quality.assigned_birthdays`:
    1 January written for a birthday nobody knew) such a key is a namesake key, so the
    tokeniser forms it only on other dates. Keys with both names, or an identifier, keep
    such dates: those were measured safe on them (docs/linkage-measured-probabilistic.md,
    "Hostels: wrong links, and assigned dates of birth").
    """
    leaves = list(fields)
    names = {name for name, _ in leaves}
    has_day = any(name == "date_of_birth" and t in _DAY_TRANSFORMS for name, t in leaves)
    both_names = bool(names & _GIVEN) and "family_name" in names
    return has_day and not both_names and not names & _IDENTIFIERS
