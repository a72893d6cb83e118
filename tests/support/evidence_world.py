"""Two UK extracts tokenised with the probabilistic spec, and the truth, for linkage tests.

A GP register and a hospital index of the same synthetic people
(``bench.populations``, the scenario with most NHS numbers missing), each record
tokenised by the SDK's :class:`~client_sdk.tokenise.Tokeniser` under a throwaway test
key with ``uk-health-probabilistic``: match-key tokens and the evidence. ``person``
gives every record's true person, keyed by ``(dataset, reference)``, for assertions
only; nothing of it reaches a broker.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from bench import populations
from broker.ingest import rekey_chunk, stored_evidence
from broker.linkage import DatasetInfo, IncomingRecord
from broker.matching import Layout
from client_sdk.tokenise import TokeniseParams, Tokeniser
from keys.chunk import TokenChunk
from keys.derive import AtRestKeyer, DomainKey, EvidenceRekeyer, StoredToken
from keys.spec import PROBABILISTIC_SPEC_NAME, LinkageSpec, default_spec

__all__ = ["BROKER_SECRET", "World", "incoming", "world"]

BROKER_SECRET = b"\x09" * 32
"""A test-only at-rest secret for linking without a broker process."""
_DOMAIN_KEY = DomainKey(bytes(range(32)))


@dataclass(frozen=True)
class World:
    """The extracts: per dataset its SDK chunk (tokens as sent), and the truth."""

    spec: LinkageSpec
    domain: str
    chunks: dict[str, TokenChunk]
    local_ids: dict[str, list[str]]
    person: dict[tuple[str, bytes], int]

    def info(self, dataset: str) -> DatasetInfo:
        """The dataset as linkage sees it (one record per person, the spec's keys)."""
        keys = tuple(k.name for k in self.spec.match_keys)
        return DatasetInfo(
            id=dataset, org=dataset.split("/")[0], one_record_per_person=True, key_names=keys
        )


@cache
def world(people: int = 300, *, scenario: int = 4, seed: int = 7) -> World:
    """The extracts of ``people`` people (cached: tokenising is the slow part)."""
    spec = default_spec(PROBABILISTIC_SPEC_NAME)
    with tempfile.TemporaryDirectory() as tmp:
        datasets, truth = populations.build(
            populations.SCENARIOS[scenario], people, seed=seed, work=Path(tmp)
        )
    chunks: dict[str, TokenChunk] = {}
    local_ids: dict[str, list[str]] = {}
    person: dict[tuple[str, bytes], int] = {}
    for name, records in datasets.items():
        dataset = f"{name}/extract"
        tokeniser = Tokeniser(
            TokeniseParams(
                spec=spec,
                domain_key=_DOMAIN_KEY,
                domain="evidence-world",
                key_version="v1",
                reference_secret=b"\x08" * 32,
                dataset=dataset,
            )
        )
        chunk = tokeniser.chunk_of_rows([tokeniser.row(r) for r in records])
        chunks[dataset] = chunk
        local_ids[dataset] = [r.local_id for r in records]
        for ref, record in zip(chunk.refs, records, strict=True):
            person[(dataset, bytes(ref))] = truth[(name, record.local_id)]
    return World(spec, "evidence-world", chunks, local_ids, person)


def incoming(
    chunk: TokenChunk, *, evidence: bool = True
) -> tuple[list[IncomingRecord], Layout | None]:
    """A chunk as ingest hands it to the engine (re-keyed at rest), with its layout."""
    stored = rekey_chunk(
        AtRestKeyer(BROKER_SECRET), chunk, EvidenceRekeyer(BROKER_SECRET) if evidence else None
    )
    layout = None
    if stored.evidence is not None:
        layout = Layout.from_columns(stored.evidence.block_names, stored.evidence.columns)
    records = [
        IncomingRecord(ref, tuple(None if t is None else StoredToken(t) for t in tokens), (), ev)
        for ref, tokens, ev in zip(stored.refs, stored.tokens, stored_evidence(stored), strict=True)
    ]
    return records, layout
