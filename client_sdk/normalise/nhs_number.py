"""NHS numbers: 10 digits with a modulus-11 check digit.

Spaces, dashes, dots, commas and other separators are ignored (``943 476 5919``,
``943-476-5919``), and so are a spreadsheet's marks (``'9434765919``, ``9434765919.0``,
``="9434765919"``). A number in scientific notation (``9.43477E+09``) may have lost digits
and is invalid. Placeholders (``0000000000``, ``9999999999``, one repeated digit, listed
examples, and words such as ``NULL`` or ``Not known``) are missing values. Anything else
that is not 10 digits or fails the check is invalid.
"""

from __future__ import annotations

import re

from client_sdk.normalise.defect import Defect
from client_sdk.normalise.placeholders import PLACEHOLDER_NHS_NUMBERS, is_placeholder_generic

__all__ = [
    "UNTRUSTED_NHS_STATUSES",
    "check_nhs_number",
    "is_untrusted_status",
    "is_valid_nhs_number",
    "normalise_nhs_number",
]

UNTRUSTED_NHS_STATUSES = frozenset({"04", "05", "07"})
"""NHS Number Status Indicator codes (England; FHIR ``NHSNumberVerificationStatus``) whose
number is not used: ``04`` trace attempted, no match or several; ``05`` trace to be
resolved (number or details conflict); ``07`` number not present. The trace says the
number may belong to someone else, and a wrong NHS number is the costliest false link."""


def is_untrusted_status(cell: str) -> bool:
    """Whether a status cell (``"04"``, ``"4"``, `` 05 ``) says the number is not to be used."""
    code = cell.strip()
    return (code.zfill(2) if code.isdigit() else code) in UNTRUSTED_NHS_STATUSES


_WEIGHTS = (10, 9, 8, 7, 6, 5, 4, 3, 2)
_ZERO_OFFSET = 48 * sum(_WEIGHTS)  # ASCII "0" is 48
_SEPARATORS = re.compile(r"[\s\-./_,]+")
# A spreadsheet's marks: a leading apostrophe (text), a trailing ".0" (a number), or the
# formula ="…" that exports write to keep a spreadsheet from turning text into a number.
_SPREADSHEET = re.compile(r"^(?:'|=?\")|(?<=\d)(?:\.0+|\")$")
_NOT_ALNUM = re.compile(r"[^A-Z0-9]+")
# Enum member lookups cost ~0.1 us each in Python 3.11: bind them once for the hot path.
_MISSING, _INVALID, _PLACEHOLDER = Defect.MISSING, Defect.INVALID, Defect.PLACEHOLDER


def is_valid_nhs_number(digits: str) -> bool:
    """Whether 10 ASCII digits pass the NHS modulus-11 check.

    Args:
        digits: exactly 10 ASCII digits.

    Returns:
        True when the check digit matches (a remainder giving 10 is never valid).
    """
    data = digits.encode("ascii")
    total = (
        data[0] * 10
        + data[1] * 9
        + data[2] * 8
        + data[3] * 7
        + data[4] * 6
        + data[5] * 5
        + data[6] * 4
        + data[7] * 3
        + data[8] * 2
        - _ZERO_OFFSET
    )
    check = 11 - total % 11
    if check == 11:
        check = 0
    return check == data[9] - 48


def check_nhs_number(raw: str) -> str | Defect:
    """Normalise an NHS number, or say why it cannot be used.

    Args:
        raw: the value as written in the source (may contain spaces or dashes).

    Returns:
        The 10 digits, or :class:`Defect` MISSING, INVALID or PLACEHOLDER.
    """
    if len(raw) != 10 or not (raw.isdigit() and raw.isascii()):
        written = raw
        raw = raw.replace(" ", "")
        if len(raw) != 10 or not raw.isdigit():
            raw = _SEPARATORS.sub("", _SPREADSHEET.sub("", raw))
        if not raw:
            return _MISSING
        if len(raw) != 10 or not (raw.isdigit() and raw.isascii()):
            return _PLACEHOLDER if _is_placeholder_word(written) else _INVALID
    if raw in PLACEHOLDER_NHS_NUMBERS:
        return _PLACEHOLDER
    if not is_valid_nhs_number(raw):
        return _INVALID
    return raw


def _is_placeholder_word(text: str) -> bool:
    """Whether a value with no number in it is a "missing" word (``NULL``, ``N/A``)."""
    if any(char.isdigit() for char in text):
        return False
    return is_placeholder_generic(" ".join(_NOT_ALNUM.sub(" ", text.upper()).split()))


def normalise_nhs_number(raw: str) -> str | None:
    """The 10 digits of a valid NHS number, or ``None`` when missing, invalid or a placeholder."""
    result = check_nhs_number(raw)
    return result if isinstance(result, str) else None
