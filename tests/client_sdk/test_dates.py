"""Dates of birth: compiled formats, ISO output, impossible, future and placeholder dates."""

from __future__ import annotations

from datetime import date, datetime

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from client_sdk.normalise import DateParser, Defect
from client_sdk.normalise.dates import DateFormatError, compile_date_format
from client_sdk.normalise.placeholders import PLACEHOLDER_DATES

TODAY = date(2026, 11, 24)


@pytest.fixture(scope="module")
def parser():
    return DateParser(["%d/%m/%Y", "%Y-%m-%d", "%d-%b-%Y", "%d/%m/%y"], today=TODAY)


@pytest.mark.parametrize(
    ("raw", "iso"),
    [
        ("01/02/1980", "1980-02-01"),
        ("1/2/1980", "1980-02-01"),
        (" 01/02/1980 ", "1980-02-01"),
        ("1980-02-29", "1980-02-29"),
        ("2000-02-29", "2000-02-29"),
        ("1980-02-29 00:00:00", "1980-02-29"),
        ("1980-02-29T00:00:00.000Z", "1980-02-29"),
        ("12-Mar-1975", "1975-03-12"),
        ("12-mar-1975", "1975-03-12"),
        ("05/06/27", "1927-06-05"),  # two-digit years are never in the future
        ("05/06/26", "2026-06-05"),
        ("24/11/2026", "2026-11-24"),
    ],
)
def test_formats(parser, raw, iso):
    assert parser.check(raw) == iso


@pytest.mark.parametrize(
    ("raw", "defect"),
    [
        ("", Defect.MISSING),
        ("31/04/1980", Defect.INVALID),
        ("29/02/1981", Defect.INVALID),
        ("1900-02-29", Defect.INVALID),  # 1900 was not a leap year
        ("00/01/1980", Defect.INVALID),
        ("01/13/1980", Defect.INVALID),
        ("25/11/2026", Defect.INVALID),  # tomorrow
        ("01/01/2099", Defect.INVALID),
        ("01/01/1899", Defect.INVALID),  # implausibly old
        ("1980/02/01", Defect.INVALID),  # not a mapped format
        ("01/01/1900", Defect.PLACEHOLDER),
        ("1901-01-01", Defect.PLACEHOLDER),
        ("1800-01-01", Defect.PLACEHOLDER),
        ("unknown", Defect.PLACEHOLDER),
        ("00/00/0000", Defect.PLACEHOLDER),  # all zeros: "not known", not a typo
        ("00000000", Defect.PLACEHOLDER),
        ("0000-00-00", Defect.PLACEHOLDER),
        ("00/00/1980", Defect.INVALID),  # a year: a broken date, not a default
    ],
)
def test_unusable_dates(parser, raw, defect):
    assert parser.check(raw) is defect
    assert parser(raw) is None


def test_first_format_giving_a_real_date_wins():
    us_then_uk = DateParser(["%m/%d/%Y", "%d/%m/%Y"], today=TODAY)
    assert us_then_uk.check("02/01/1980") == "1980-02-01"
    assert us_then_uk.check("13/01/1980") == "1980-01-13"  # no 13th month: the next format


@pytest.mark.parametrize("fmt", ["%d/%m", "%Y-%m-%d %q", "%d/%d/%Y", "%d %b %m %Y", "%Y"])
def test_bad_formats_are_refused(fmt):
    with pytest.raises(DateFormatError):
        compile_date_format(fmt)


@given(st.dates(min_value=date(1902, 1, 1), max_value=TODAY))
def test_agrees_with_strptime(day):
    assume(day.isoformat() not in PLACEHOLDER_DATES)
    for fmt in ("%d/%m/%Y", "%Y-%m-%d", "%d-%b-%Y", "%Y%m%d", "%d.%m.%Y"):
        text = day.strftime(fmt)
        expected = datetime.strptime(text, fmt).date().isoformat()
        assert DateParser([fmt], today=TODAY).check(text) == expected


def test_a_date_in_three_cells_of_zeros_is_a_placeholder():
    parser = DateParser(["%Y%m%d"], today=TODAY)
    assert parser.check("00000000") is Defect.PLACEHOLDER
    assert parser.check_parts("0", "0", "0000") is Defect.PLACEHOLDER
    assert parser.check_parts("00", "00", "1980") is Defect.INVALID
