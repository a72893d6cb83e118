"""Places: the locality (suburb, town, village) and the region (state, county, province).

Both are read as free text and put in one canonical form, so that ``St. Kilda``,
``SAINT KILDA`` and ``st  kilda`` are one locality and ``New South Wales``, ``N.S.W.`` and
``nsw`` one region:

1. transliterated to ASCII as names are (``Zürich`` → ``ZURICH``, ``Ōtautahi`` →
   ``OTAUTAHI``; symbols such as emoji dropped), upper case;
2. apostrophes deleted (``Bishop's Stortford`` → ``BISHOPS STORTFORD``), every other
   character that is not a letter or a digit a space (hyphens, dots, commas, brackets),
   repeated spaces folded to one;
3. the common abbreviations of a place name's words written out, wherever the word
   stands (:data:`PLACE_ABBREVIATIONS`: ``ST`` → ``SAINT``, ``MT`` → ``MOUNT``, ``PT`` →
   ``PORT``, ``NTH`` → ``NORTH``, ``GT`` → ``GREAT``, …), so ``Mt Eliza`` = ``Mount Eliza``
   and ``Stratford-upon-Avon`` = ``Stratford upon Avon``;
4. a region only: a known full name or abbreviation replaced by one canonical name
   (:data:`REGION_NAMES`: the Australian states and territories by their postal
   abbreviation, ``NEW SOUTH WALES`` → ``NSW``; the traditional abbreviations of English
   counties by the county, ``HANTS`` → ``HAMPSHIRE``, ``CO DURHAM`` → ``DURHAM``).

A value that is, after cleaning, a "not known" word (``UNKNOWN``, ``N/A``, ``NOT STATED``,
``NULL``: the generic placeholder list) is a placeholder and never tokenised.
"""

from __future__ import annotations

import re

from client_sdk.normalise.defect import Defect
from client_sdk.normalise.placeholders import is_placeholder_generic
from client_sdk.normalise.transliterate import to_ascii

__all__ = ["PLACE_ABBREVIATIONS", "REGION_NAMES", "check_locality", "check_region"]

PLACE_ABBREVIATIONS = {
    "ST": "SAINT",
    "STE": "SAINTE",
    "MT": "MOUNT",
    "MTN": "MOUNTAIN",
    "PT": "PORT",
    "FT": "FORT",
    "NTH": "NORTH",
    "STH": "SOUTH",
    "GT": "GREAT",
    "LT": "LITTLE",
    "LWR": "LOWER",
    "UPR": "UPPER",
}
"""A place name's abbreviated word → the word (applied to every word of the value)."""

_AUSTRALIA = {
    "NSW": ("NEW SOUTH WALES",),
    "VIC": ("VICTORIA",),
    "QLD": ("QUEENSLAND",),
    "SA": ("SOUTH AUSTRALIA",),
    "WA": ("WESTERN AUSTRALIA",),
    "TAS": ("TASMANIA",),
    "ACT": ("AUSTRALIAN CAPITAL TERRITORY",),
    "NT": ("NORTHERN TERRITORY",),
}
_ENGLISH_COUNTIES = {
    "BEDFORDSHIRE": ("BEDS",),
    "BERKSHIRE": ("BERKS",),
    "BUCKINGHAMSHIRE": ("BUCKS",),
    "CAMBRIDGESHIRE": ("CAMBS",),
    "DERBYSHIRE": ("DERBYS",),
    "DURHAM": ("CO DURHAM", "COUNTY DURHAM"),
    "GLOUCESTERSHIRE": ("GLOS",),
    "HAMPSHIRE": ("HANTS",),
    "HERTFORDSHIRE": ("HERTS",),
    "LANCASHIRE": ("LANCS",),
    "LEICESTERSHIRE": ("LEICS",),
    "LINCOLNSHIRE": ("LINCS",),
    "MIDDLESEX": ("MIDDX",),
    "NORTHAMPTONSHIRE": ("NORTHANTS",),
    "NOTTINGHAMSHIRE": ("NOTTS",),
    "OXFORDSHIRE": ("OXON",),
    "SHROPSHIRE": ("SHROPS", "SALOP"),
    "STAFFORDSHIRE": ("STAFFS",),
    "WARWICKSHIRE": ("WARKS",),
    "WILTSHIRE": ("WILTS",),
    "WORCESTERSHIRE": ("WORCS",),
    "YORKSHIRE": ("YORKS",),
}
REGION_NAMES: dict[str, str] = {
    alias: canonical
    for table in (_AUSTRALIA, _ENGLISH_COUNTIES)
    for canonical, aliases in table.items()
    for alias in (canonical, *aliases)
}
"""A region's cleaned name or abbreviation → its canonical name (others stay as written).

An abbreviation written with dots or spaces between its letters (``N.S.W.``, ``A C T``)
is looked up with its letters joined."""

_NOT_ALNUM = re.compile(r"[^A-Z0-9]+")


def _place_words(raw: str) -> list[str]:
    return _NOT_ALNUM.sub(" ", to_ascii(raw).upper().replace("'", "")).split()


def check_locality(raw: str) -> str | Defect:
    """Canonical locality (suburb, town, village), or a :class:`Defect`.

    Args:
        raw: e.g. ``"St. Kilda"``, ``"Mt Eliza"``, ``"Stratford-upon-Avon"``.

    Returns:
        e.g. ``"SAINT KILDA"``, ``"MOUNT ELIZA"``, ``"STRATFORD UPON AVON"``; MISSING when
        nothing is left, PLACEHOLDER for a "not known" word.
    """
    words = _place_words(raw)
    if not words:
        return Defect.MISSING
    if is_placeholder_generic(" ".join(words)):
        return Defect.PLACEHOLDER
    return " ".join([PLACE_ABBREVIATIONS.get(word, word) for word in words])


def check_region(raw: str) -> str | Defect:
    """Canonical region (state, county, province), or a :class:`Defect`.

    Args:
        raw: e.g. ``"New South Wales"``, ``"n.s.w."``, ``"Hants"``.

    Returns:
        e.g. ``"NSW"``, ``"NSW"``, ``"HAMPSHIRE"``; a region not in :data:`REGION_NAMES`
        is cleaned as a locality is (``"Co. Kerry"`` → ``"CO KERRY"``).
    """
    words = _place_words(raw)
    if not words:
        return Defect.MISSING
    cleaned = " ".join(words)
    if is_placeholder_generic(cleaned):
        return Defect.PLACEHOLDER
    known = REGION_NAMES.get(cleaned) or REGION_NAMES.get("".join(words))
    if known is not None:
        return known
    expanded = " ".join([PLACE_ABBREVIATIONS.get(word, word) for word in words])
    return REGION_NAMES.get(expanded, expanded)
