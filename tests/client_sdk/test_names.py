"""Names: transliteration, punctuation, titles, suffixes, particles, nicknames."""

from __future__ import annotations

import re
from importlib import resources

import pytest

from client_sdk.normalise import (
    Defect,
    check_family_name,
    check_given_names,
    nickname_key,
    normalise_family_name,
    normalise_given_name,
    split_full_name,
)
from client_sdk.normalise.names import (
    NICKNAME_GROUPS,
    NICKNAMES,
    name_words,
    nickname_groups,
    parse_nicknames,
)


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("Łukasz", "LUKASZ"),  # NFKD alone drops Ł
        ("Øystein", "OYSTEIN"),
        ("Ærø", "AERO"),
        ("Weiß", "WEISS"),  # NFKD alone mangles ß
        ("Müller", "MULLER"),
        ("Núñez", "NUNEZ"),
        ("Đorđević", "DORDEVIC"),
        ("Þórsdóttir", "THORSDOTTIR"),
        ("Ivanova", "IVANOVA"),
        ("Иванова", "IVANOVA"),  # Cyrillic
        ("O'Brien", "OBRIEN"),
        ("O’Brien", "OBRIEN"),  # typographic apostrophe
        ("O Brien", "OBRIEN"),
        ("OBRIEN", "OBRIEN"),
        ("D'Arcy", "DARCY"),
        ("Smith-Jones", "SMITH JONES"),
        ("Smith – Jones", "SMITH JONES"),  # en dash
        ("smith jones", "SMITH JONES"),
        ("McDonald", "MCDONALD"),
        ("Mc Donald", "MCDONALD"),
        ("MacDonald", "MACDONALD"),  # Mc and Mac stay distinct; phonetic keys bridge them
        ("de la Cruz", "DELACRUZ"),
        ("De La Cruz", "DELACRUZ"),
        ("DELACRUZ", "DELACRUZ"),
        ("van der Berg", "VANDERBERG"),
        ("Saint John", "STJOHN"),
        ("St. John", "STJOHN"),
        ("Jones Jr.", "JONES"),
        ("Windsor III", "WINDSOR"),
        ("Le", "LE"),  # a particle alone is the name
        ("Smith (née Jones)", "SMITH"),
        ("Smith formerly Jones", "SMITH"),
        ("Jones (Mrs)", "JONES"),
        ("Nee", "NEE"),
    ],
)
def test_family_names(raw, canonical):
    assert check_family_name(raw) == canonical


@pytest.mark.parametrize(
    ("raw", "parts"),
    [
        ("William", ("WILLIAM", None)),
        ("Mr William Henry", ("WILLIAM", "HENRY")),
        ("Dr. Jane", ("JANE", None)),
        ("Master Tom", ("TOM", None)),
        ("Mary-Ann", ("MARY", "ANN")),
        ("Mary Ann", ("MARY", "ANN")),
        ("Zoë", ("ZOE", None)),
        ("Seán", ("SEAN", None)),
        ("Robert aka Bob", ("ROBERT", None)),
    ],
)
def test_given_names(raw, parts):
    assert check_given_names(raw) == parts


@pytest.mark.parametrize(
    "raw", ["Unknown", "BABY", "Baby of Smith", "Baby Girl", "Not Known", "XXX", "zz", "Test"]
)
def test_name_placeholders(raw):
    assert check_given_names(raw) is Defect.PLACEHOLDER
    assert check_family_name(raw) is Defect.PLACEHOLDER


def test_a_title_alone_is_not_a_name():
    assert check_given_names("Mr") is Defect.PLACEHOLDER
    assert check_given_names(" . ") is Defect.MISSING


@pytest.mark.parametrize(
    ("raw", "layout", "given", "family"),
    [
        ("SMITH, John", "FAMILY, GIVEN", ("JOHN", None), "SMITH"),
        ("SMITH-JONES, Mrs Zoë", "FAMILY, GIVEN", ("ZOE", None), "SMITH JONES"),
        ("PATEL, William Henry (Mr)", "FAMILY, GIVEN", ("WILLIAM", "HENRY"), "PATEL"),
        ("SMITH John", "FAMILY, GIVEN", ("JOHN", None), "SMITH"),  # no comma
        ("SMITH, ", "FAMILY, GIVEN", Defect.MISSING, "SMITH"),
        ("SMITH, BABY", "FAMILY, GIVEN", Defect.PLACEHOLDER, "SMITH"),
        ("SMITH (NEE JONES), Mary", "FAMILY, GIVEN", ("MARY", None), "SMITH"),
        ("Mary Smith née Jones", "GIVEN FAMILY", ("MARY", None), "SMITH"),
        ("SMITH, Mary", "GIVEN FAMILY", ("MARY", None), "SMITH"),  # a comma decides
        ("Dr Maria de la Cruz", "GIVEN FAMILY", ("MARIA", None), "DELACRUZ"),
        ("John Paul Smith Jr", "GIVEN FAMILY", ("JOHN", "PAUL"), "SMITH"),
        ("Ben Smith", "GIVEN FAMILY", ("BEN", None), "SMITH"),
        ("Smith", "GIVEN FAMILY", Defect.MISSING, "SMITH"),
        ("de la Cruz Maria", "FAMILY GIVEN", ("MARIA", None), "DELACRUZ"),
        # a title that is also a family name leads FAMILY GIVEN as the family name...
        ("MAJOR John", "FAMILY GIVEN", ("JOHN", None), "MAJOR"),
        ("Mast Peter", "FAMILY GIVEN", ("PETER", None), "MAST"),
        # ...unless a family name and a given name follow it; a pure title always goes
        ("Major Smith John", "FAMILY GIVEN", ("JOHN", None), "SMITH"),
        ("MR SMITH John", "FAMILY GIVEN", ("JOHN", None), "SMITH"),
        ("Mr Smith", "FAMILY GIVEN", Defect.MISSING, "SMITH"),
        ("Unknown", "GIVEN FAMILY", Defect.PLACEHOLDER, Defect.PLACEHOLDER),
    ],
)
def test_full_name_layouts(raw, layout, given, family):
    assert split_full_name(raw, layout) == (given, family)


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("BILL", "WILLIAM"),
        ("WILL", "WILLIAM"),
        ("WILLIAM", "WILLIAM"),
        ("BOB", "ROBERT"),
        ("ROBERT", "ROBERT"),
        ("PEGGY", "MARGARET"),
        ("MAGGIE", "MARGARET"),
        ("LIZ", "ELIZABETH"),
        ("BETTY", "ELIZABETH"),
        ("DICK", "RICHARD"),
        ("SAM", "SAMUEL"),
        ("SAMANTHA", "SAMUEL"),
        ("LIAM", "LIAM"),  # a name in its own right
        ("JACK", "JACK"),
        ("ZEBEDEE", "ZEBEDEE"),  # not in the table: its own key
    ],
)
def test_nickname_keys(name, key):
    assert nickname_key(name) == key


def test_nickname_table_is_well_formed():
    text = resources.files("client_sdk").joinpath("data/nicknames.txt").read_text("utf-8")
    seen: set[str] = set()
    groups = 0
    for line in text.splitlines():
        content = line.split("#", 1)[0].strip()
        if not content:
            continue
        key, _, variants = content.partition(":")
        names = [key.strip(), *variants.split()]
        for name in names:
            also = name.removeprefix("+")
            assert also == also.upper() and also.isalpha() and also.isascii(), name
            if also != name:  # a second group of a name written plainly in another
                assert NICKNAMES[also] != key.strip(), name
                continue
            assert name not in seen, f"{name} is written plainly in two groups"
            seen.add(name)
        groups += 1
    assert groups >= 100
    assert len(NICKNAMES) - groups >= 300  # a few hundred diminutives
    # every table entry is already canonical, so a canonical name finds its key
    for name in NICKNAMES:
        assert name_words(name) == [name]


@pytest.mark.parametrize(
    ("name", "groups"),
    [
        ("JENNY", ("JANE", "JENNIFER")),  # a diminutive of two formal names: both groups
        ("JENNIFER", ("JENNIFER",)),
        ("JANE", ("JANE",)),
        ("JO", ("JOAN", "JOSEPHINE")),
        ("BILL", ("WILLIAM",)),
        ("ZEBEDEE", ("ZEBEDEE",)),  # not in the table: its own group
    ],
)
def test_nickname_groups(name, groups):
    assert nickname_groups(name) == groups


def test_a_name_in_two_groups_keeps_its_key():
    """Match keys read one key per name: the group where the name is written plainly."""
    assert nickname_key("JENNY") == "JANE"
    assert nickname_key("JO") == "JOAN"
    assert all(NICKNAMES[name] in groups for name, groups in NICKNAME_GROUPS.items())
    assert all(len(groups) >= 2 for groups in NICKNAME_GROUPS.values())
    assert len(NICKNAME_GROUPS) <= 0.05 * len(NICKNAMES)  # few names pay for a second token


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("JANE: JENNY\nJENNIFER: JENNY", "JENNY is in two groups"),
        ("JENNIFER: JEN +JENNY", "+JENNY needs a group of its own"),
        ("JANE: JENNY\nJENNIFER: +JENNY +JENNY", "JENNY is in JENNIFER's group already"),
        ("JANE: JENNY +JENNY", "JENNY is in JANE's group already"),
    ],
)
def test_the_nickname_table_refuses_a_name_keyed_twice(text, error):
    with pytest.raises(ValueError, match=re.escape(error)):
        parse_nicknames(text)


def test_normalise_helpers_return_value_or_none():
    assert normalise_given_name("Mr Bill Henry") == "BILL"
    assert normalise_given_name("Baby") is None
    assert normalise_family_name("O’Brien") == "OBRIEN"
    assert normalise_family_name("") is None
