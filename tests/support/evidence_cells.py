"""The comparison tokens a tokeniser gives records, keyed by (block, comparison, level):
what the level tests compare between records (agreeing cells share a token)."""

from __future__ import annotations

from client_sdk.evidence import Evidence
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


def dob_agreement(spec: LinkageSpec, block: str, a: Evidence, b: Evidence) -> str:
    """The strongest date-of-birth level at which two records' evidence
    (:meth:`client_sdk.tokenise.Tokeniser.evidence`) agrees in ``block`` (the broker's
    reading, docs/probabilistic.md step 4), given both are in it; ``"disagree"`` if none."""
    (blocks_a, cells_a), (blocks_b, cells_b) = a, b
    names = [k.name for k in spec.blocking_keys]
    assert blocks_a[names.index(block)] == blocks_b[names.index(block)] is not None
    for column, cell_a, cell_b in zip(spec.evidence_columns, cells_a, cells_b, strict=True):
        comparison = spec.comparisons[column.comparison]
        if names[column.block] == block and comparison.field == "date_of_birth":
            if set(cell_a) & set(cell_b):
                return comparison.levels[column.level]
    return "disagree"
