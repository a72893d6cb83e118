"""A fitted Fellegi–Sunter model over real SDK tokens, for the report and review tests.

Two one-record-per-person extracts of one synthetic population (the hospital's with
given-name typos), tokenised by the SDK under the probabilistic UK spec and fitted by
``broker.matching.fit`` from the evidence alone, as the engine will.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from broker.matching import Layout, Model, RecordEvidence, ScoredPair, fit, score_pairs
from client_sdk.record import NormalisedRecord
from client_sdk.tokenise import TokeniseParams, Tokeniser
from keys.derive import DomainKey
from keys.spec import PROBABILISTIC_SPEC_NAME, default_spec

GIVEN = ["OLIVER", "AMELIA", "GEORGE", "ISLA", "HARRY", "AVA", "JACK", "MIA", "NOAH", "IVY"]
FAMILY = ["SMITH", "JONES", "TAYLOR", "BROWN", "WILLIAMS", "KHAN", "PATEL", "WILSON"]


@dataclass(frozen=True)
class ModelWorld:
    """The fitted model, the records it was fitted on, and every pair it scored."""

    model: Model
    records: list[RecordEvidence]
    pairs: list[ScoredPair]


def _record(local_id: str, **values: str | None) -> NormalisedRecord:
    base: dict[str, str | None] = {"nhs_number": None, **values}
    base["given_name_key"] = values["given_name"]
    return NormalisedRecord(line=0, local_id=local_id, **base)  # type: ignore[arg-type]


def _population(seed: int, people: int) -> list[tuple[str, NormalisedRecord]]:
    rng = random.Random(seed)
    out = []
    for i in range(people):
        person = {
            "given_name": rng.choice(GIVEN),
            "family_name": rng.choice(FAMILY),
            "date_of_birth": f"{rng.randint(1940, 2010)}-{rng.randint(1, 12):02d}-"
            f"{rng.randint(1, 28):02d}",
            "sex": rng.choice("MF"),
            "postcode": f"BA{rng.randint(1, 9)} {rng.randint(1, 9)}"
            f"{rng.choice('ABD')}{rng.choice('EFG')}",
        }
        out.append(("gp", _record(f"g{i}", **person)))
        if rng.random() < 0.6:
            typo = dict(person)
            if rng.random() < 0.2:
                typo["given_name"] = person["given_name"][:-1] + "E"
            out.append(("hosp", _record(f"h{i}", **typo)))
    return out


def fitted_world(seed: int = 7, people: int = 300) -> ModelWorld:
    """Fit a model on a synthetic population and score all of its candidate pairs."""
    tokeniser = Tokeniser(
        TokeniseParams(
            spec=default_spec(PROBABILISTIC_SPEC_NAME),
            domain_key=DomainKey(bytes(range(32))),
            domain="test",
            key_version="v1",
            reference_secret=b"r" * 32,
            dataset="test",
        )
    )
    records: list[RecordEvidence] = []
    layout: Layout | None = None
    for number, (dataset, record) in enumerate(_population(seed, people)):
        chunk = tokeniser.chunk_of_rows([tokeniser.row(record)])
        assert chunk.evidence is not None
        if layout is None:
            layout = Layout.from_columns(chunk.evidence.block_names, chunk.evidence.columns)
        records.append(
            RecordEvidence(number, dataset, chunk.evidence.blocks[0], chunk.evidence.cells()[0])
        )
    assert layout is not None
    model = fit(layout, records)
    return ModelWorld(model, records, score_pairs(model, records, records))
