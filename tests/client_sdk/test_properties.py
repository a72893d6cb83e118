"""Hypothesis properties of normalisation: idempotent, and blind to presentation."""

from __future__ import annotations

import string
from datetime import date

from hypothesis import given
from hypothesis import strategies as st

from client_sdk.normalise import (
    DateParser,
    Defect,
    check_family_name,
    check_given_names,
    check_nhs_number,
    check_postcode,
    check_sex,
)
from client_sdk.normalise.placeholders import (
    PLACEHOLDER_DATES,
    PLACEHOLDER_GENERIC,
    PLACEHOLDER_NAMES,
    PLACEHOLDER_NHS_NUMBERS,
)
from client_sdk.normalise.text import check_address_line, check_other_id

# Names as people write them: letters (with accents), hyphens, apostrophes, spaces.
_letters = st.sampled_from(list(string.ascii_letters) + list("éèëöüßñçåøłæÉÖÜÑŁØÆ"))
_word = st.text(_letters, min_size=2, max_size=10)
names = st.lists(_word, min_size=1, max_size=4).map(" ".join)

_ACCENTED = str.maketrans("ABCDEGILNOSUZ", "ÁBĆĎÉĞÍŁÑÖŠÜŽ")


@given(names)
def test_family_name_is_idempotent(raw):
    once = check_family_name(raw)
    if isinstance(once, str):
        assert check_family_name(once) == once


@given(names)
def test_given_names_are_idempotent(raw):
    once = check_given_names(raw)
    if isinstance(once, tuple):
        first, middle = once
        assert check_given_names(first) == (first, None)
        again = check_given_names(" ".join([first, middle or ""]))
        assert again == once


@given(names, st.sampled_from(["lower", "upper", "title", "swapcase"]))
def test_case_does_not_matter(raw, case):
    assert check_family_name(getattr(raw, case)()) == check_family_name(raw)
    assert check_given_names(getattr(raw, case)()) == check_given_names(raw)


@given(names, st.sampled_from(["  ", "\t", " - ", "-", " – ", ", ", ". "]))
def test_spacing_and_separators_do_not_matter(raw, separator):
    spaced = f"  {separator.join(raw.split())}  "
    assert check_family_name(spaced) == check_family_name(raw)
    assert check_given_names(spaced) == check_given_names(raw)


@given(names)
def test_apostrophes_do_not_matter(raw):
    words = raw.split()
    marked = " ".join(f"{w[:1]}'{w[1:]}" if len(w) > 1 else w for w in words)
    typographic = marked.replace("'", "’")
    assert check_family_name(marked) == check_family_name(raw.replace("'", ""))
    assert check_family_name(typographic) == check_family_name(marked)


@given(st.text(st.sampled_from("ABCDEGILNOSUZabcdegilnosuz"), min_size=2, max_size=12))
def test_diacritics_do_not_matter(raw):
    accented = raw.upper().translate(_ACCENTED)
    assert check_family_name(accented) == check_family_name(raw)


@given(st.sampled_from(sorted(PLACEHOLDER_NAMES)), st.sampled_from(["lower", "upper", "title"]))
def test_name_placeholders_are_never_values(raw, case):
    assert check_family_name(getattr(raw, case)()) is Defect.PLACEHOLDER
    assert check_given_names(getattr(raw, case)()) is Defect.PLACEHOLDER


@given(st.sampled_from(sorted(PLACEHOLDER_NHS_NUMBERS)), st.sampled_from(["", " ", "-"]))
def test_nhs_placeholders_are_never_values(digits, separator):
    spaced = separator.join([digits[:3], digits[3:6], digits[6:]])
    assert not isinstance(check_nhs_number(spaced), str)


@given(st.sampled_from(sorted(PLACEHOLDER_GENERIC)))
def test_generic_placeholders_are_never_values(raw):
    assert not isinstance(check_postcode(raw), str)
    assert not isinstance(check_address_line(raw.lower()), str)
    assert not isinstance(check_other_id(raw), str)
    assert check_sex(raw) is Defect.PLACEHOLDER


@given(
    st.from_regex(r"[A-PR-UWYZ][0-9] [0-9][ABD-HJLNP-UW-Z]{2}", fullmatch=True),
    st.sampled_from(["", " ", "  ", "-"]),
    st.sampled_from(["lower", "upper"]),
)
def test_postcode_presentation_does_not_matter(postcode, separator, case):
    outward, inward = postcode.split()
    written = getattr(f"{outward}{separator}{inward}", case)()
    assert check_postcode(written) == postcode
    assert check_postcode(postcode) == postcode  # idempotent


@given(st.from_regex(r"[0-9]{9}", fullmatch=True))
def test_nhs_number_is_idempotent(prefix):
    for digit in "0123456789":
        once = check_nhs_number(prefix + digit)
        if isinstance(once, str):
            assert check_nhs_number(once) == once
            assert check_nhs_number(f"{once[:3]} {once[3:6]} {once[6:]}") == once


@given(st.sampled_from(sorted(PLACEHOLDER_DATES)), st.sampled_from(["%Y-%m-%d", "%d/%m/%Y"]))
def test_date_placeholders_are_never_values(iso, fmt):
    year, month, day = iso.split("-")
    text = f"{day}/{month}/{year}" if fmt == "%d/%m/%Y" else iso
    assert not isinstance(DateParser([fmt], today=date(2026, 11, 24)).check(text), str)
