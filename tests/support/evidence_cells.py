"""The comparison tokens a tokeniser gives records, keyed by (block, comparison, level):
what the level tests compare between records (agreeing cells share a token)."""

from __future__ import annotations

from client_sdk.record import NormalisedRecord
from client_sdk.tokenise import TokeniseParams, Tokeniser
from keys.derive import DomainKey
from keys.spec import LinkageSpec

Cells = dict[tuple[str, str, str], set[bytes]]


def evidence_cells(spec: LinkageSpec, *records: NormalisedRecord, seed: int = 0x31) -> list[Cells]:
    """Each record's comparison tokens under ``spec`` and a throwaway key made of ``seed``."""
    tokeniser = Tokeniser(
        TokeniseParams(
            spec=spec,
            domain_key=DomainKey(bytes([seed]) * 32),
            domain="levels-test",
            key_version="v1",
            reference_secret=bytes([seed + 1]) * 32,
            dataset="levels",
        )
    )
    chunk = tokeniser.chunk_of_rows([tokeniser.row(r) for r in records])
    assert chunk.evidence is not None
    out = []
    for cells in chunk.evidence.cells():
        by_column: Cells = {}
        for (block, comparison, level), cell in zip(chunk.evidence.columns, cells, strict=True):
            by_column[(chunk.evidence.block_names[block], comparison, level)] = set(cell)
        out.append(by_column)
    return out
