"""Golden vectors of the probabilistic stage's tokens (keys/vectors/evidence.json).

Pinned, and re-derived from docs/token-format.md#block-and-comparison-tokens with hmac,
hashlib and AES alone, so the document, the vectors and the code cannot drift apart: the
shipped ``uk-health-probabilistic`` spec on the first two token-vector records, and under
``levels`` a spec of the newer levels (``transpose``, ``one_word``, ``either_order``,
``either_order_soundex``, ``one_edit``) on three records of one person: the second with a
transposed id and date, an address typo and the names swapped, the third with a typo in
each name; and under ``nicknames`` a spec of the given name's ``nickname`` level on JENNY
(in two nickname groups), JENNIFER and JANE, its level values read from the nickname
table's documented format (docs/normalisation.md), not from the SDK; and under ``partial``
the shipped spec on the first token-vector record with a partial date of birth, its year
and month, then its year alone (docs/token-format.md, "A partial date of birth").
Regenerate (only on a deliberate format change)::

    PYTHONPATH=. .venv/bin/python tests/client_sdk/test_tokenise_evidence_vectors.py --write
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from client_sdk.record import NormalisedRecord
from client_sdk.tokenise import TokeniseParams, Tokeniser
from keys.derive import DomainKey
from keys.spec import PROBABILISTIC_SPEC_NAME, LinkageSpec, default_spec, parse_spec
from tests.client_sdk.test_tokenise_vectors import (
    DATASET,
    DOMAIN,
    DOMAIN_KEY,
    KEY_VERSION,
    RECORDS,
    REFERENCE_SECRET,
)

VECTORS = Path(__file__).resolve().parents[2] / "keys" / "vectors" / "evidence.json"
LEVELS_SPEC = """name = "example-levels"

[[match_keys]]
name = "id_dob"
fields = ["other_id", "date_of_birth"]

[[blocking_keys]]
name = "names_phonetic"
fields = ["{given_name:soundex, family_name:soundex}"]

[[blocking_keys]]
name = "postcode"
fields = ["postcode"]

[[comparisons]]
name = "given"
field = "given_name"
with_field = "family_name"
levels = ["exact", "one_edit", "either_order", "either_order_soundex"]

[[comparisons]]
name = "family"
field = "family_name"
levels = ["exact", "one_edit"]

[[comparisons]]
name = "dob"
field = "date_of_birth"
levels = ["exact", "transpose"]

[[comparisons]]
name = "other_id"
field = "other_id"
levels = ["exact", "transpose"]

[[comparisons]]
name = "address"
field = "address_line"
levels = ["exact", "one_word"]
"""
_LEVELS_PERSON = NormalisedRecord(
    line=2,
    local_id="AU000011",
    given_name="GABRIELLE",
    given_name_key="GABRIELLE",
    family_name="LANGER",
    date_of_birth="1984-07-03",
    postcode="2164",
    address_line="8 STANLEY STREET",
    other_id="2164035",
)
LEVELS_RECORDS = [
    _LEVELS_PERSON,
    # The same person: names in each other's fields, two digits of the id and of the
    # year swapped, a typo in the street name.
    _LEVELS_PERSON._replace(
        line=3,
        local_id="AU000012",
        given_name="LANGER",
        given_name_key="LANGER",
        family_name="GABRIELLE",
        date_of_birth="1948-07-03",
        address_line="8 STANELY STREET",
        other_id="2614035",
    ),
    # The same person again: a letter of each name mistyped or dropped.
    _LEVELS_PERSON._replace(
        line=4,
        local_id="AU000013",
        given_name="GABRIELE",
        given_name_key="GABRIELE",
        family_name="LANGRE",
    ),
]


NICKNAMES_SPEC = """name = "example-nicknames"

[[match_keys]]
name = "given_dob"
fields = ["given_name", "date_of_birth"]

[[blocking_keys]]
name = "dob"
fields = ["date_of_birth"]

[[comparisons]]
name = "given"
field = "given_name"
levels = ["exact", "nickname"]
"""
_NICKNAMES_PERSON = NormalisedRecord(
    line=2,
    local_id="GB000021",
    given_name="JENNY",
    given_name_key="JANE",
    family_name="HOLT",
    date_of_birth="1990-05-17",
)
NICKNAMES_RECORDS = [
    _NICKNAMES_PERSON,
    # JENNY's two groups: she agrees at `nickname` with JENNIFER and with JANE, who do not
    # agree with each other.
    _NICKNAMES_PERSON._replace(
        line=3, local_id="GB000022", given_name="JENNIFER", given_name_key="JENNIFER"
    ),
    _NICKNAMES_PERSON._replace(line=4, local_id="GB000023", given_name="JANE"),
]
PARTIAL_RECORDS = [
    RECORDS[0]._replace(local_id="GP000091", date_of_birth=None, date_of_birth_partial="1984-07"),
    RECORDS[0]._replace(local_id="GP000092", date_of_birth=None, date_of_birth_partial="1984"),
]


def _field(value: bytes) -> bytes:
    return len(value).to_bytes(2, "big") + value


def _cases(spec: LinkageSpec, records: list[NormalisedRecord]) -> list[dict[str, object]]:
    """Each record's block tokens (with their encoded inputs) and every column's tokens."""
    tokeniser = Tokeniser(
        TokeniseParams(
            spec=spec,
            domain_key=DomainKey(DOMAIN_KEY),
            domain=DOMAIN,
            key_version=KEY_VERSION,
            reference_secret=REFERENCE_SECRET,
            dataset=DATASET,
        )
    )
    cases: list[dict[str, object]] = []
    for record in records:
        row = tokeniser.row(record)
        inputs = tokeniser.block_values_of_row(row)
        blocks, cells = tokeniser.evidence(record)
        columns = []
        for column, cell in zip(spec.evidence_columns, cells, strict=True):
            comparison = spec.comparisons[column.comparison]
            columns.append(
                {
                    "block": spec.blocking_keys[column.block].name,
                    "comparison": comparison.name,
                    "level": comparison.levels[column.level],
                    "tokens": [t.hex() for t in cell],
                }
            )
        cases.append(
            {
                "local_id": record.local_id,
                "blocks": {
                    key.name: None
                    if token is None or data is None
                    else {"values_encoded": data.hex(), "token": token.hex()}
                    for key, token, data in zip(spec.blocking_keys, blocks, inputs, strict=True)
                },
                "columns": columns,
            }
        )
    return cases


def _levels_spec() -> LinkageSpec:
    return parse_spec(tomllib.loads(LEVELS_SPEC), source="example-levels")


def _nicknames_spec() -> LinkageSpec:
    return parse_spec(tomllib.loads(NICKNAMES_SPEC), source="example-nicknames")


def compute_vectors() -> dict[str, object]:
    """The vectors file as the current code derives it."""
    spec = default_spec(PROBABILISTIC_SPEC_NAME)
    levels, nicknames = _levels_spec(), _nicknames_spec()
    return {
        "description": "Tessera block and comparison token vectors: docs/token-format.md.",
        "domain_key": DOMAIN_KEY.hex(),
        "domain": DOMAIN,
        "key_version": KEY_VERSION,
        "spec_hash": spec.content_hash,
        "cases": _cases(spec, RECORDS[:2]),
        "levels": {
            "spec": LEVELS_SPEC,
            "spec_hash": levels.content_hash,
            "cases": _cases(levels, LEVELS_RECORDS),
        },
        "nicknames": {
            "spec": NICKNAMES_SPEC,
            "spec_hash": nicknames.content_hash,
            "cases": _cases(nicknames, NICKNAMES_RECORDS),
        },
        "partial": {"cases": _cases(spec, PARTIAL_RECORDS)},
    }


def test_evidence_vectors_are_pinned() -> None:
    assert json.loads(VECTORS.read_text()) == compute_vectors()


def test_evidence_vectors_follow_the_documented_recipe() -> None:
    vectors = json.loads(VECTORS.read_text())
    checked = _check_recipe(
        vectors, vectors["spec_hash"], default_spec(PROBABILISTIC_SPEC_NAME), RECORDS
    )
    assert checked > 100
    levels = vectors["levels"]
    spec = parse_spec(tomllib.loads(levels["spec"]))
    checked = _check_recipe({**vectors, **levels}, levels["spec_hash"], spec, LEVELS_RECORDS)
    assert checked > 40
    nicknames = vectors["nicknames"]
    spec = parse_spec(tomllib.loads(nicknames["spec"]))
    checked = _check_recipe(
        {**vectors, **nicknames}, nicknames["spec_hash"], spec, NICKNAMES_RECORDS
    )
    assert checked == 7  # exact for each, nickname: JENNY two groups, the others one
    checked = _check_recipe(
        {**vectors, **vectors["partial"]},
        vectors["spec_hash"],
        default_spec(PROBABILISTIC_SPEC_NAME),
        PARTIAL_RECORDS,
    )
    assert checked > 100


def test_the_partial_vectors_keep_the_year_block_and_no_dob_block() -> None:
    """A partial date has no ``dob`` block and the ``postcode_year`` block's input of the
    full date of its year; every other block is the full date's record's."""
    vectors = json.loads(VECTORS.read_text())
    full = vectors["cases"][0]["blocks"]
    for case in vectors["partial"]["cases"]:
        assert case["blocks"]["dob"] is None
        for name in ("nhs", "names_phonetic", "postcode_year"):
            assert case["blocks"][name] == full[name]
    year_month, year = (
        {
            (c["block"], c["level"]): len(c["tokens"])
            for c in case["columns"]
            if c["comparison"] == "dob" and c["tokens"]
        }
        for case in vectors["partial"]["cases"]
    )
    blocks = ("nhs", "names_phonetic", "postcode_year")
    assert year_month == {
        (b, level): 1 for b in blocks for level in ("year_month", "assigned_year")
    }
    assert year == {(b, "assigned_year"): 1 for b in blocks}


def test_the_nickname_vectors_show_a_name_in_two_groups() -> None:
    """JENNY shares a `nickname` token with JENNIFER and with JANE; those two share none."""
    cases = json.loads(VECTORS.read_text())["nicknames"]["cases"]
    jenny, jennifer, jane = (
        {c["level"]: set(c["tokens"]) for c in case["columns"]} for case in cases
    )
    assert len(jenny["nickname"]) == 2
    assert jenny["nickname"] & jennifer["nickname"]
    assert jenny["nickname"] & jane["nickname"]
    assert not jennifer["nickname"] & jane["nickname"]
    assert not jenny["exact"] & (jennifer["exact"] | jane["exact"])


def test_the_levels_vectors_show_each_new_level_agreeing() -> None:
    """The two records of one person share a token at every level made for their errors."""
    cases = json.loads(VECTORS.read_text())["levels"]["cases"]
    first, second, third = (
        {(c["block"], c["comparison"], c["level"]): set(c["tokens"]) for c in case["columns"]}
        for case in cases
    )
    shared = {column for column in first if first[column] & second[column]}
    typos = {column for column in first if first[column] & third[column]}
    for block in ("names_phonetic", "postcode"):
        for comparison in ("given", "family"):
            assert (block, comparison, "one_edit") in typos
            assert (block, comparison, "exact") not in typos
    for block in ("names_phonetic", "postcode"):
        assert (block, "given", "either_order") in shared
        assert (block, "dob", "transpose") in shared
        assert (block, "address", "one_word") in shared
        assert (block, "other_id", "transpose") in shared
        for comparison in ("given", "dob", "other_id", "address"):  # each field differs
            assert (block, comparison, "exact") not in shared


def _check_recipe(
    vectors: dict[str, object], spec_hash: str, spec: LinkageSpec, records: list[NormalisedRecord]
) -> int:
    """Re-derive every block and comparison token of ``vectors`` from the documented recipe."""
    key = bytes.fromhex(str(vectors["domain_key"]))
    head = (
        _field(str(vectors["domain"]).encode())
        + _field(str(vectors["key_version"]).encode())
        + _field(spec_hash.encode())
    )
    cipher_key = hmac.new(key, b"tessera/v1/comparison-key" + head, hashlib.sha256).digest()
    values = {r.local_id: r for r in records}
    comparisons = {c.name: c for c in spec.comparisons}
    checked = 0
    for case in vectors["cases"]:  # type: ignore[attr-defined]
        record = values[case["local_id"]]
        secrets: dict[str, bytes] = {}
        for name, entry in case["blocks"].items():
            if entry is None:
                continue
            encoded = bytes.fromhex(entry["values_encoded"])
            message = b"tessera/v1/block" + head + _field(name.encode()) + encoded
            digest = hmac.new(key, message, hashlib.sha256).digest()
            assert digest[:16].hex() == entry["token"]
            secrets[name] = digest[16:]  # the block secret: the other half
        for column in case["columns"]:
            if column["block"] not in secrets:
                assert column["tokens"] == []
                continue
            comparison = comparisons[column["comparison"]]
            value = getattr(record, comparison.field)
            other = getattr(record, comparison.with_field) if comparison.with_field else None
            expected = _level_values(column["level"], value, other) if value else []
            if comparison.field == "date_of_birth" and record.date_of_birth_partial:
                expected = _partial_level_values(column["level"], record.date_of_birth_partial)
            assert len(column["tokens"]) == len(expected)
            for token, level_value in zip(column["tokens"], expected, strict=True):
                digest = hashlib.blake2b(
                    _field(column["comparison"].encode())
                    + _field(column["level"].encode())
                    + _field(level_value.encode()),
                    digest_size=16,
                ).digest()
                mixed = bytes(a ^ b for a, b in zip(secrets[column["block"]], digest, strict=True))
                encryptor = Cipher(algorithms.AES(cipher_key), modes.ECB()).encryptor()
                assert encryptor.update(mixed)[:4].hex() == token
                checked += 1
    return checked


_SOUNDEX = {  # American Soundex of the letters, as docs/token-format.md#transforms
    "GABRIELLE": "G164",
    "LANGER": "L526",
    "GABRIELE": "G164",
    "LANGRE": "L526",
    "WILLIAM": "W450",
    "OBRIEN": "O165",
    "ZOE": "Z000",
    "SMITH JONES": "S532",
}


def _level_values(level: str, value: str, other: str | None = None) -> list[str]:
    """The documented level values of the levels the vectors' records reach."""
    if level == "any_given":  # each name among the given and middle names, sorted
        return sorted({value, *(other or "").split()})
    if level == "joined_middle":  # the given name, then it and the first middle name as one
        first = (other or "").split()[:1]
        return [value, value + first[0]] if first else [value]
    if level in _PAIR_LEVELS:
        return [_PAIR_LEVELS[level](value, other)] if other else []
    return _LEVELS[level](value)


def _partial_level_values(level: str, partial: str) -> list[str]:
    """A partial date's documented values under the shipped spec: ``year_month`` when it
    has a month, ``assigned_year``, nothing else."""
    if level == "year_month":
        return [partial] if len(partial) == 7 else []
    return [partial[:4]] if level == "assigned_year" else []


def _transpose(value: str) -> list[str]:
    return [
        value[:i] + "*" + "".join(sorted(value[i : i + 2])) + value[i + 2 :]
        for i in range(len(value) - 1)
        if value[i].isdigit() and value[i + 1].isdigit() and value[i] != value[i + 1]
    ]


def _one_word(value: str) -> list[str]:
    """Each word replaced by ``*`` (two words or more), then the value without its spaces."""
    words = value.split(" ")
    stars = [" ".join(words[:i] + ["*"] + words[i + 1 :]) for i in range(len(words))]
    return [*(stars if len(words) > 1 else []), "".join(words)]


def _one_edit(value: str) -> list[str]:
    deletions = (value[:i] + value[i + 1 :] for i in range(len(value)))
    return list(dict.fromkeys([value, *(d for d in deletions if d)]))


def _swap(value: str) -> list[str]:
    day, month = value[8:], value[5:7]
    return [f"{value[:4]}-{day}-{month}" if day < month else value]


_NYSIIS = {"WILLIAM": "WALAN", "ZOE": "Z", "OBRIEN": "OBRAN", "SMITHJONES": "SNATJAN"}
_LEVELS: dict[str, Callable[[str], list[str]]] = {
    "exact": lambda v: [v],
    "one_digit": lambda v: [v[:i] + "*" + v[i + 1 :] for i, ch in enumerate(v) if ch.isdigit()],
    "transpose": _transpose,
    "one_word": _one_word,
    "one_edit": _one_edit,
    "part": lambda v: sorted(set(v.split())),
    "joined": lambda v: [v.replace(" ", "")],
    "year_month": lambda v: [v[:7]],
    "year": lambda v: [v[:4]],
    "assigned_year": lambda v: [v[:4]],
    "initial": lambda v: [v[0]],
    "swap": _swap,
    "sector": lambda v: [v[: v.index(" ") + 2]],
    "district": lambda v: [v.split(" ")[0]],
    "nickname": lambda v: _nickname_groups().get(v, [v]),
    "nysiis": lambda v: [_NYSIIS[v.replace(" ", "")]],
}


def _nickname_groups() -> dict[str, list[str]]:
    """Each name of the nickname table → the keys of its groups, sorted, as documented.

    Read from the file's documented format (docs/normalisation.md, "Nickname table"):
    ``KEY: VARIANT …`` lines, ``#`` comments; a name is in the group of every line that
    holds it, as ``NAME`` or ``+NAME``, and the line's key is in its own group.
    """
    text = (VECTORS.parents[2] / "client_sdk" / "data" / "nicknames.txt").read_text("utf-8")
    groups: dict[str, set[str]] = {}
    for line in text.splitlines():
        key, colon, variants = line.split("#", 1)[0].partition(":")
        if not colon:
            continue
        for name in (key.strip(), *variants.split()):
            groups.setdefault(name.removeprefix("+"), set()).add(key.strip())
    return {name: sorted(keys) for name, keys in groups.items()}


_PAIR_LEVELS: dict[str, Callable[[str, str], str]] = {
    "either_order": lambda v, o: "|".join(sorted((v, o))),
    "either_order_soundex": lambda v, o: "|".join(sorted((_SOUNDEX[v], _SOUNDEX[o]))),
}


if __name__ == "__main__" and "--write" in sys.argv:
    VECTORS.write_text(json.dumps(compute_vectors(), indent=2) + "\n")
    print(f"wrote {VECTORS}")
