"""Normalisation and validation of identifiers: pure, deterministic, fast.

Each ``check_*`` function returns the canonical value or a :class:`Defect` saying why the
value cannot be used; each ``normalise_*`` function returns the value or ``None``.
``transforms`` (match-key transforms) lives beside these modules.
"""

from __future__ import annotations

from client_sdk.normalise.dates import DateParser
from client_sdk.normalise.defect import Defect
from client_sdk.normalise.names import (
    check_family_name,
    check_given_names,
    nickname_key,
    normalise_family_name,
    normalise_given_name,
    split_full_name,
)
from client_sdk.normalise.nhs_number import check_nhs_number, normalise_nhs_number
from client_sdk.normalise.postcode import (
    check_postcode,
    normalise_postcode,
    postcode_district,
    postcode_sector,
)
from client_sdk.normalise.sex import check_sex, normalise_sex

__all__ = [
    "DateParser",
    "Defect",
    "check_family_name",
    "check_given_names",
    "check_nhs_number",
    "check_postcode",
    "check_sex",
    "nickname_key",
    "normalise_family_name",
    "normalise_given_name",
    "normalise_nhs_number",
    "normalise_postcode",
    "normalise_sex",
    "postcode_district",
    "postcode_sector",
    "split_full_name",
]
