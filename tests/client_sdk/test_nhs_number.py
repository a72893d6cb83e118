"""NHS numbers: modulus 11, separators, placeholders."""

from __future__ import annotations

import pytest

from client_sdk.normalise import Defect, check_nhs_number, normalise_nhs_number
from client_sdk.normalise.nhs_number import is_valid_nhs_number


@pytest.mark.parametrize(
    "raw",
    ["9990079196", "999 007 9196", "999-007-9196", " 999.007.9196 ", "'9990079196", "9990079196.0"],
)
def test_separators_are_ignored(raw):
    assert normalise_nhs_number(raw) == "9990079196"


@pytest.mark.parametrize(
    ("raw", "defect"),
    [
        ("", Defect.MISSING),
        ("  - ", Defect.MISSING),
        ("9990079197", Defect.INVALID),  # wrong check digit
        ("999007919", Defect.INVALID),  # nine digits
        ("99900791960", Defect.INVALID),
        ("999O079196", Defect.INVALID),  # letter O
        ("9.99008E+09", Defect.INVALID),  # a spreadsheet's rounding: digits are lost
        ("٩٩٩٠٠٧٩١٩٦", Defect.INVALID),  # Arabic-Indic digits are not NHS numbers
        ("0000000000", Defect.PLACEHOLDER),
        ("9999999999", Defect.PLACEHOLDER),
        ("1111111111", Defect.PLACEHOLDER),  # passes modulus 11
        ("4444444444", Defect.PLACEHOLDER),
        ("222 222 2222", Defect.PLACEHOLDER),
        ("1234567881", Defect.PLACEHOLDER),  # an example number that passes the check
    ],
)
def test_unusable_numbers(raw, defect):
    assert check_nhs_number(raw) is defect
    assert normalise_nhs_number(raw) is None


def test_check_digit_of_ten_is_never_valid():
    # 999000001x: weights give a remainder whose check digit would be 10 for some prefixes
    prefixes = [f"{n:09d}" for n in range(123456780, 123456800)]
    for prefix in prefixes:
        valid = [d for d in "0123456789" if is_valid_nhs_number(prefix + d)]
        assert len(valid) <= 1


def test_known_valid_number():
    # The worked example in the NHS Data Dictionary's description of the check.
    assert is_valid_nhs_number("9434765919")
    assert not is_valid_nhs_number("9434765918")
