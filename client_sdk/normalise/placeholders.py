"""The documented list of placeholder values (client_sdk/data/placeholders.toml).

Placeholders are defaults and "unknown" markers that systems store instead of a value.
They are missing values: tokenising ``0000000000`` or ``1900-01-01`` would link strangers.
"""

from __future__ import annotations

import re
import tomllib
from importlib import resources

__all__ = [
    "PLACEHOLDER_DATES",
    "PLACEHOLDER_GENERIC",
    "PLACEHOLDER_NAMES",
    "PLACEHOLDER_NAME_PREFIXES",
    "PLACEHOLDER_NHS_NUMBERS",
    "PLACEHOLDER_PAYLOAD",
    "PLACEHOLDER_POSTCODE_OUTWARD",
    "is_placeholder_generic",
    "is_placeholder_name",
    "payload_value",
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
