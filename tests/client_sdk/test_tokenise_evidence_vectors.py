"""Golden vectors of the probabilistic stage's tokens (keys/vectors/evidence.json).

Pinned, and re-derived from docs/token-format.md#comparison-tokens with hmac, hashlib and
AES alone, so the document, the vectors and the code cannot drift apart. Regenerate (only
on a deliberate format change)::

    PYTHONPATH=. .venv/bin/python tests/client_sdk/test_tokenise_evidence_vectors.py --write
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sys
from pathlib import Path

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from client_sdk.tokenise import TokeniseParams, Tokeniser
from keys.derive import DomainKey
from keys.spec import PROBABILISTIC_SPEC_NAME, default_spec
from tests.client_sdk.test_tokenise_vectors import (
    DATASET,
    DOMAIN,
    DOMAIN_KEY,
    KEY_VERSION,
    RECORDS,
    REFERENCE_SECRET,
)

VECTORS = Path(__file__).resolve().parents[2] / "keys" / "vectors" / "evidence.json"


def _field(value: bytes) -> bytes:
    return len(value).to_bytes(2, "big") + value


def compute_vectors() -> dict[str, object]:
    """The vectors file as the current code derives it: the first two records' evidence."""
    spec = default_spec(PROBABILISTIC_SPEC_NAME)
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
    cases = []
    for record in RECORDS[:2]:
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
    return {
        "description": "Tessera block and comparison token vectors: docs/token-format.md.",
        "domain_key": DOMAIN_KEY.hex(),
        "domain": DOMAIN,
        "key_version": KEY_VERSION,
        "spec_hash": spec.content_hash,
        "cases": cases,
    }


def test_evidence_vectors_are_pinned() -> None:
    assert json.loads(VECTORS.read_text()) == compute_vectors()


def test_evidence_vectors_follow_the_documented_recipe() -> None:
    vectors = json.loads(VECTORS.read_text())
    key = bytes.fromhex(vectors["domain_key"])
    head = (
        _field(vectors["domain"].encode())
        + _field(vectors["key_version"].encode())
        + _field(vectors["spec_hash"].encode())
    )
    cipher_key = hmac.new(key, b"tessera/v1/comparison-key" + head, hashlib.sha256).digest()
    values = {r.local_id: r for r in RECORDS}
    spec = default_spec(PROBABILISTIC_SPEC_NAME)
    fields = {c.name: c.field for c in spec.comparisons}
    checked = 0
    for case in vectors["cases"]:
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
            value = getattr(record, fields[column["comparison"]])
            expected = _level_values(column["level"], value) if value else []
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
    assert checked > 100


def _level_values(level: str, value: str) -> list[str]:
    """The documented level values of the levels the vectors' records reach."""
    if level == "exact":
        return [value]
    if level == "one_digit":
        return [value[:i] + "*" + value[i + 1 :] for i, ch in enumerate(value) if ch.isdigit()]
    if level == "part":
        return sorted(set(value.split()))
    if level == "year_month":
        return [value[:7]]
    if level == "year":
        return [value[:4]]
    if level == "initial":
        return [value[0]]
    if level == "swap":
        day, month = value[8:], value[5:7]
        return [f"{value[:4]}-{day}-{month}" if day < month else value]
    if level == "sector":
        return [value[: value.index(" ") + 2]]
    if level == "district":
        return [value.split(" ")[0]]
    if level == "nickname":
        return [value]  # WILLIAM and ZOE are their own name group
    if level == "nysiis":
        return [
            {"WILLIAM": "WALAN", "ZOE": "Z", "OBRIEN": "OBRAN", "SMITHJONES": "SNATJAN"}[
                value.replace(" ", "")
            ]
        ]
    raise AssertionError(f"no documented values for level {level}")


if __name__ == "__main__" and "--write" in sys.argv:
    VECTORS.write_text(json.dumps(compute_vectors(), indent=2) + "\n")
    print(f"wrote {VECTORS}")
