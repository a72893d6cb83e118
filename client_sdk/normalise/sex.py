"""Sex and gender codes: M/F/U, Male/Female, the NHS Data Dictionary's 0/1/2/9, FHIR gender.

Only male and female are kept (``"M"``, ``"F"``). "Not known" (0, U, FHIR ``unknown``),
"not specified" (9), indeterminate and FHIR ``other`` are placeholders: they say nothing a
match key could use, and so are the generic "missing" words (``N/A``, ``NULL``). A code
followed by its description in brackets is read by the code (``Not Known (not recorded)``,
the NHS Data Dictionary's wording). Anything else is invalid.
"""

from __future__ import annotations

import re

from client_sdk.normalise.defect import Defect
from client_sdk.normalise.placeholders import is_placeholder_generic
from client_sdk.record import Sex

__all__ = ["SEX_CODES", "check_sex", "normalise_sex"]

_NOT_ALNUM = re.compile(r"[^A-Z0-9]+")

SEX_CODES: dict[str, Sex | Defect] = {
    "M": "M",
    "MALE": "M",
    "MAN": "M",
    "1": "M",
    "F": "F",
    "FEMALE": "F",
    "WOMAN": "F",
    "2": "F",
    "0": Defect.PLACEHOLDER,
    "9": Defect.PLACEHOLDER,
    "U": Defect.PLACEHOLDER,
    "UN": Defect.PLACEHOLDER,
    "UNK": Defect.PLACEHOLDER,
    "UNKNOWN": Defect.PLACEHOLDER,
    "NK": Defect.PLACEHOLDER,
    "NOT KNOWN": Defect.PLACEHOLDER,
    "NS": Defect.PLACEHOLDER,
    "NOT SPECIFIED": Defect.PLACEHOLDER,
    "NOT STATED": Defect.PLACEHOLDER,
    "UNSPECIFIED": Defect.PLACEHOLDER,
    "NOT RECORDED": Defect.PLACEHOLDER,
    "I": Defect.PLACEHOLDER,
    "INDETERMINATE": Defect.PLACEHOLDER,
    "X": Defect.PLACEHOLDER,
    "O": Defect.PLACEHOLDER,
    "OTHER": Defect.PLACEHOLDER,
}


def check_sex(raw: str) -> Sex | Defect:
    """Normalise a sex or gender code, or say why it cannot be used.

    Args:
        raw: the code as written (case and surrounding spaces are ignored).

    Returns:
        ``"M"``, ``"F"``, or :class:`Defect` MISSING, PLACEHOLDER or INVALID.
    """
    key = " ".join(_NOT_ALNUM.sub(" ", raw.upper()).split())
    if not key:
        return Defect.MISSING
    result = SEX_CODES.get(key)
    if result is not None:
        return result
    if "(" in raw:  # a code with its description: "Indeterminate (unable to be classified …)"
        result = SEX_CODES.get(" ".join(_NOT_ALNUM.sub(" ", raw.partition("(")[0].upper()).split()))
        if result is not None:
            return result
    return Defect.PLACEHOLDER if is_placeholder_generic(key) else Defect.INVALID


def normalise_sex(raw: str) -> Sex | None:
    """``"M"`` or ``"F"``, or ``None`` when missing, unknown or invalid."""
    result = check_sex(raw)
    return result if isinstance(result, str) else None
