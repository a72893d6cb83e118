"""Sex and gender codes."""

from __future__ import annotations

import pytest

from client_sdk.normalise import Defect, check_sex


@pytest.mark.parametrize(
    ("raw", "sex"),
    [
        ("M", "M"),
        ("m", "M"),
        ("Male", "M"),
        (" MALE ", "M"),
        ("1", "M"),
        ("male", "M"),  # FHIR gender
        ("F", "F"),
        ("Female", "F"),
        ("2", "F"),
        ("female", "F"),
    ],
)
def test_male_and_female(raw, sex):
    assert check_sex(raw) == sex


@pytest.mark.parametrize(
    "raw", ["0", "9", "U", "unknown", "other", "Not Known", "I", "X", "N/A", "null", "N.K."]
)
def test_not_known_codes_are_placeholders(raw):
    assert check_sex(raw) is Defect.PLACEHOLDER


def test_missing_and_invalid():
    assert check_sex("") is Defect.MISSING
    assert check_sex("3") is Defect.INVALID
    assert check_sex("Q") is Defect.INVALID
