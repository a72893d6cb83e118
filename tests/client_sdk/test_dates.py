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
        ("01/00/1980", Defect.INVALID),  # a day without a month
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
        ("00/00/1980", Defect.PARTIAL),  # a year alone (test_partial_dates.py)
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
    assert parser.check_parts("00", "00", "1980") is Defect.PARTIAL  # a year alone


@pytest.mark.parametrize(
    "raw",
    ["12-MAR-1975", "12-mar-1975", "12-Mar-1975", "12-March-1975", "12-MARCH-1975",
     "12-march-1975", "12-Mar.-1975"],
)  # fmt: skip
def test_month_names_in_any_case_abbreviated_or_not(raw):
    for fmt in ("%d-%b-%Y", "%d-%B-%Y"):
        assert DateParser([fmt], today=TODAY).check(raw) == "1975-03-12"


@pytest.mark.parametrize(
    ("raw", "iso"), [("01 jan 1980", "1980-01-01"), ("1 Sept 1980", "1980-09-01")]
)
def test_month_names_with_spaces(raw, iso):
    assert DateParser(["%d %b %Y"], today=TODAY).check(raw) == iso


def test_an_unknown_month_name_is_invalid():
    assert DateParser(["%d-%b-%Y"], today=TODAY).check("12-Smarch-1975") is Defect.INVALID


@pytest.mark.parametrize(
    ("raw", "iso"),
    [
        ("24/11/26", "2026-11-24"),  # today
        ("25/11/26", "1926-11-25"),  # tomorrow in 2026, so a century earlier
        ("31/12/26", "1926-12-31"),
        ("01/01/00", "2000-01-01"),
        ("29/02/28", "1928-02-29"),
    ],
)
def test_two_digit_years_pivot_on_today(raw, iso):
    assert DateParser(["%d/%m/%y"], today=TODAY).check(raw) == iso


@given(
    day=st.dates(min_value=date(1902, 1, 1), max_value=date(2099, 12, 31)),
    today=st.dates(min_value=date(2000, 1, 1), max_value=date(2099, 12, 31)),
)
def test_a_two_digit_year_is_the_latest_reading_not_after_today(day, today):
    text = day.strftime("%d/%m/%y")
    result = DateParser(["%d/%m/%y"], today=today).check(text)
    candidates = [
        d for c in (today.year // 100 * 100 - 100, today.year // 100 * 100)
        if (d := _real(c + day.year % 100, day.month, day.day)) is not None and d <= today
    ]  # fmt: skip
    best = max(candidates, default=None)
    if best is None or best.year < today.year - 125 or best.isoformat() in PLACEHOLDER_DATES:
        assert not isinstance(result, str)
    else:
        assert result == best.isoformat()


def _real(year, month, day):
    try:
        return date(year, month, day)
    except ValueError:
        return None
