"""Name variants: one name in several romanisations shares a given-name key (nicknames.txt)."""

from __future__ import annotations

import pytest

from client_sdk.mapping import parse_mapping
from client_sdk.normalise import check_given_names, nickname_key, split_full_name
from client_sdk.normalise.names import NICKNAMES
from client_sdk.pipeline import iter_records

VARIANTS = {
    "MOHAMMED": (
        "Mohammed Mohammad Mohamed Mohamad Mohammod Muhammad Muhammed Muhamad Muhamed "
        "Muhammet Mahomed Md Md. MOHD Mohd. Muhd Mhd"
    ),
    "AHMED": "Ahmed Ahmad Ahamed Ahmet",
    "HUSSAIN": "Hussain Hussein Husain Husein Husayn Hossain Hossein Hüseyin",
    "YUSUF": "Yusuf Yousuf Yusef Yousef Youssef Yousif Yousaf",
    "ABDUL": "Abdul Abdel Abdool Abdoul",
    "MAHMOUD": "Mahmoud Mahmud Mahmood Mehmood Mohamud Mahmut",
    "IBRAHIM": "Ibrahim Ibraheem Ebrahim",
    "MUSTAFA": "Mustafa Mustapha Mostafa Moustafa",
    "USMAN": "Usman Uthman Othman Osman",
    "FATIMA": "Fatima Fatimah Fatema Fatma",
    "AISHA": "Aisha Ayesha Aysha Aishah Ayisha Ayşe",
}


def _key(raw: str) -> str:
    result = check_given_names(raw)
    assert isinstance(result, tuple), raw
    return nickname_key(result[0])


@pytest.mark.parametrize(("key", "raw"), [(k, r) for k, v in VARIANTS.items() for r in v.split()])
def test_variants_share_the_group_key(key, raw):
    assert _key(raw) == key
    assert _key(raw.lower()) == key


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("Mohammed", "Mahmoud"),  # Muhammad and Mahmud are two names
        ("Mohamed", "Mohamud"),  # Somali Maxamed and Maxamuud
        ("Mohammed", "Mehmet"),  # the Turkish name in its own right
        ("Mohammed", "Mo"),  # also Maurice, Morris, Maureen
        ("Hussain", "Hassan"),
        ("Hussain", "Hasan"),
        ("Hussain", "Husnain"),
        ("Yusuf", "Joseph"),
        ("Yusuf", "Yosef"),
        ("Abdul", "Abdullah"),
        ("Ibrahim", "Abraham"),
        ("Ibrahim", "Ibrahima"),
        ("Aisha", "Asha"),
        ("Ahmed", "Mahmoud"),
        ("Fatima", "Fatimata"),
        ("Mohammed", "Ahmed"),
    ],
)
def test_different_names_keep_different_keys(one, other):
    assert _key(one) != _key(other)


def test_keys_are_idempotent_and_canonical():
    for name, key in NICKNAMES.items():
        assert nickname_key(key) == key
        assert check_given_names(name) == (name, None)
        assert check_given_names(key) == (key, None)


@pytest.mark.parametrize(
    ("raw", "layout", "given", "family"),
    [
        ("Md Rahim Uddin", "GIVEN FAMILY", ("MD", "RAHIM"), "UDDIN"),
        ("Md. Rahim Uddin", "GIVEN FAMILY", ("MD", "RAHIM"), "UDDIN"),
        ("Md Rahim", "GIVEN FAMILY", ("MD", None), "RAHIM"),
        ("UDDIN, Md Rahim", "FAMILY, GIVEN", ("MD", "RAHIM"), "UDDIN"),
        ("UDDIN Md Rahim", "FAMILY GIVEN", ("MD", "RAHIM"), "UDDIN"),
        ("Mr Md Rahim Uddin", "GIVEN FAMILY", ("MD", "RAHIM"), "UDDIN"),
        # a degree after a full name is still dropped
        ("Rahim Uddin MD", "GIVEN FAMILY", ("RAHIM", None), "UDDIN"),
        ("UDDIN, Rahim MD", "FAMILY, GIVEN", ("RAHIM", None), "UDDIN"),
    ],
)
def test_md_as_a_given_name_is_kept(raw, layout, given, family):
    assert split_full_name(raw, layout) == (given, family)


def test_md_in_a_given_name_column():
    assert check_given_names("Md Rahim") == ("MD", "RAHIM")
    assert check_given_names("Dr Md Rahim") == ("MD", "RAHIM")
    assert check_given_names("Rahim MD") == ("RAHIM", None)  # a degree after a name
    assert _key("Md Rahim") == _key("Mohammed Rahim") == "MOHAMMED"


def test_records_written_both_ways_share_the_given_name_key(tmp_path):
    path = tmp_path / "extract.csv"
    path.write_text(
        "ID,NAME,DOB\n"
        "1,UDDIN Md Rahim,01/02/1980\n"
        "2,UDDIN Mohammed Rahim,01/02/1980\n"
        "3,BEGUM Ayesha,03/04/1985\n"
        "4,BEGUM Aisha,03/04/1985\n"
        "5,UDDIN Mahmood,01/02/1980\n",
        encoding="utf-8",
    )
    mapping = parse_mapping(
        {
            "source": {"format": "csv", "encoding": "utf-8"},
            "record": {"id": "ID"},
            "identifiers": {
                "full_name": {"column": "NAME", "layout": "FAMILY GIVEN"},
                "date_of_birth": {"column": "DOB", "formats": ["%d/%m/%Y"]},
            },
        }
    )
    records = list(iter_records(path, mapping))
    assert [(r.given_name, r.given_name_key, r.middle_names) for r in records] == [
        ("MD", "MOHAMMED", "RAHIM"),
        ("MOHAMMED", "MOHAMMED", "RAHIM"),
        ("AYESHA", "AISHA", None),
        ("AISHA", "AISHA", None),
        ("MAHMOOD", "MAHMOUD", None),
    ]
