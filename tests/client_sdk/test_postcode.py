"""Postcodes: canonical UK form, district, sector, placeholders, other countries."""

from __future__ import annotations

import pytest

from client_sdk.normalise import (
    Defect,
    check_postcode,
    normalise_postcode,
    postcode_district,
    postcode_sector,
)


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("BA1 1AA", "BA1 1AA"),
        ("ba11aa", "BA1 1AA"),
        ("  Ba1   1aA ", "BA1 1AA"),
        ("sw1a-2aa", "SW1A 2AA"),
        ("EC1A 1BB", "EC1A 1BB"),
        ("W1A 0AX", "W1A 0AX"),
        ("M1 1AE", "M1 1AE"),
        ("B33 8TH", "B33 8TH"),
        ("CR2 6XH", "CR2 6XH"),
        ("DN55 1PT", "DN55 1PT"),
        ("GIR 0AA", "GIR 0AA"),
        ("BA1 OAA", "BA1 0AA"),  # letter O typed for the inward digit
        ("ba1 iaa", "BA1 1AA"),
    ],
)
def test_canonical_uk_form(raw, canonical):
    assert normalise_postcode(raw) == canonical


@pytest.mark.parametrize(
    ("raw", "defect"),
    [
        ("", Defect.MISSING),
        (" - ", Defect.MISSING),
        ("BA1", Defect.INVALID),  # a district alone is not a postcode
        ("BA1 1CA", Defect.INVALID),  # C is never in an inward code
        ("QA1 1AA", Defect.INVALID),  # Q never starts a postcode
        ("12345", Defect.INVALID),
        ("ZZ99 3VZ", Defect.PLACEHOLDER),  # no fixed abode
        ("zz993wz", Defect.PLACEHOLDER),  # address not known
        ("ZZ99 3CZ", Defect.PLACEHOLDER),
        ("NFA", Defect.PLACEHOLDER),
        ("No fixed abode", Defect.PLACEHOLDER),
        ("unknown", Defect.PLACEHOLDER),
    ],
)
def test_unusable_postcodes(raw, defect):
    assert check_postcode(raw) is defect


def test_district_and_sector():
    assert postcode_district("BA1 1AA") == "BA1"
    assert postcode_sector("BA1 1AA") == "BA1 1"
    assert postcode_district("SW1A 2AA") == "SW1A"
    assert postcode_sector("SW1A 2AA") == "SW1A 2"


def test_other_countries_are_compacted_without_format_check():
    assert normalise_postcode("d02 x285", country="IE") == "D02X285"
    assert normalise_postcode("75008", country="FR") == "75008"
    assert normalise_postcode("N/A", country="FR") is None
    # no district or sector: the whole value, never coarser
    assert postcode_district("D02X285") == "D02X285"
    assert postcode_sector("D02X285") == "D02X285"
