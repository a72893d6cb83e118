"""A small linked world on the real broker for agreement and release tests.

Persons 0..59 with known tokens: a GP practice holds persons 0..49, a hospital persons
20..59 (so 30 persons are in both), an opt-out register whoever a test puts there. Every
person's payload is a function of their number, so tests know the truth.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from broker.agreements import Agreement, approve_agreement, create_agreement
from broker.opt_out_registers import declare_opt_out_register
from broker.runtime import utc_now
from broker.store.identities import find_identity
from client_sdk.client import BrokerClient
from keys.derive import RecordRef, Token
from keys.wire import BatchMode, BatchState, DatasetDeclaration, DatasetKind, Role
from keys.wire_release import AgreementTerms
from tests.support.governance_terms import governance
from tests.support.harness import BrokerProcess, make_batch, unique

__all__ = ["GP_PERSONS", "HOSPITAL_PERSONS", "World", "build_world", "today"]

GP_PERSONS = range(0, 50)
HOSPITAL_PERSONS = range(20, 60)
_KEYS = ("nhs", "name_dob")


def today() -> date:
    """Today in UTC."""
    return datetime.now(UTC).date()


def age_band(i: int) -> str:
    """The GP's AGE_BAND of person ``i``: bands of very different sizes."""
    return ("0-17", "18-64", "18-64", "65-84", "65-84", "85+")[i % 6] if i % 17 else "=1+1"


def ltc(i: int) -> str:
    """The GP's LTC count of person ``i``."""
    return str(i % 4)


def ae(i: int) -> str:
    """The hospital's A&E attendances of person ``i``."""
    return str(i % 5)


def admissions(i: int) -> str:
    """The hospital's emergency admissions of person ``i``."""
    return str(i % 3)


@dataclass
class World:
    """Orgs, datasets and credentials of one world."""

    broker: BrokerProcess
    tmp: Path
    domain: str
    gp: str
    gp_cred: str
    hosp: str
    hosp_cred: str
    ndop: str
    ndop_cred: str
    researcher: str
    researcher_cred: str
    gp_refs: dict[int, RecordRef] = field(default_factory=dict)
    hosp_refs: dict[int, RecordRef] = field(default_factory=dict)
    tokens: dict[int, tuple[Token, Token]] = field(default_factory=dict)

    def client(self, credential: str) -> BrokerClient:
        """A BrokerClient under ``credential``."""
        return BrokerClient(self.broker.url, credential, backoff=0.01)

    def declare(self, credential: str, name: str, payload: list[str], kind: DatasetKind) -> None:
        """Declare a dataset of the world's domain."""
        with self.client(credential) as client:
            client.declare_dataset(
                DatasetDeclaration(
                    name=name,
                    one_record_per_person=True,
                    domain=self.domain,
                    spec_hash="spec-test-1",
                    key_version="v1",
                    match_keys=list(_KEYS),
                    payload_columns=payload,
                    kind=kind,
                )
            )

    def upload(
        self,
        credential: str,
        dataset: str,
        persons: list[int],
        refs: dict[int, RecordRef],
        payload: list[tuple[str | None, ...]],
        payload_columns: list[str],
        *,
        mode: BatchMode = BatchMode.APPEND,
    ) -> None:
        """Upload records of ``persons`` (tokens of the world; references from ``refs``)."""
        path = self.tmp / f"{unique('batch')}.tsb"
        tokens = [] if mode is BatchMode.RETRACT else [self.tokens[i] for i in persons]
        make_batch(
            path,
            dataset=dataset,
            refs=[refs[i] for i in persons],
            tokens=tokens or [()] * len(persons),
            payload=None if mode is BatchMode.RETRACT else payload,
            payload_columns=[] if mode is BatchMode.RETRACT else payload_columns,
            match_keys=() if mode is BatchMode.RETRACT else _KEYS,
            domain=self.domain,
        )
        with self.client(credential) as client:
            status = client.upload(path, mode=mode, poll=0.05, wait_timeout=120)
        assert status.state is BatchState.LINKED, status

    def opt_out(self, persons: list[int]) -> None:
        """Put ``persons`` on the opt-out register (tokens only)."""
        rng = random.Random(f"ndop-{persons}")
        refs = {i: RecordRef(rng.randbytes(16)) for i in persons}
        self.upload(self.ndop_cred, "register", persons, refs, [()] * len(persons), [])

    def terms(self, **overrides: object) -> AgreementTerms:
        """Record-level research terms over both datasets, active today."""
        base: dict[str, object] = {
            "title": "Frailty and emergency care",
            "purpose": "How frailty relates to emergency admissions.",
            "legal_basis": "Section 251 of the NHS Act 2006",
            "kind": "research_record_level",
            "datasets": [
                {"org": self.gp, "name": "reg", "fields": ["AGE_BAND", "LTC"]},
                {"org": self.hosp, "name": "pas", "fields": ["AE"]},
            ],
            "researchers": [self.researcher],
            "start": today() - timedelta(days=1),
            "end": today() + timedelta(days=30),
        }
        base.update(overrides)
        start, end = (_as_date(base[k]) for k in ("start", "end"))
        base = {**governance(start=start, end=end), **base}
        return AgreementTerms.model_validate(base)

    def agreement(self, *, approve: bool = True, **overrides: object) -> Agreement:
        """Create (and by default fully approve) an agreement."""
        store = self.broker.runtime.store
        agreement = create_agreement(
            store, self.terms(**overrides), created_by="operator", role="operator"
        )
        if approve:
            for org in agreement.contributors:
                agreement = approve_agreement(store, agreement.id, org=find_identity(store, org))
        return agreement


def _as_date(value: object) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def build_world(
    broker: BrokerProcess, tmp: Path, *, seed: int = 7, designate_register: bool = True
) -> World:
    """Declare the three datasets and upload the GP and hospital records.

    Args:
        designate_register: have the operator make ``ndop/register`` an opt-out register.
    """
    gp, gp_cred = broker.add_org(unique("gp"))
    hosp, hosp_cred = broker.add_org(unique("hosp"))
    ndop, ndop_cred = broker.add_org(unique("ndop"))
    researcher = unique("res")
    researcher_cred = broker.add_identity(Role.RESEARCHER, researcher)
    world = World(
        broker, tmp, unique("dom"), gp, gp_cred, hosp, hosp_cred, ndop, ndop_cred,
        researcher, researcher_cred,
    )  # fmt: skip
    rng = random.Random(seed)
    for i in range(60):
        world.tokens[i] = (Token(rng.randbytes(16)), Token(rng.randbytes(16)))
        world.gp_refs[i] = RecordRef(rng.randbytes(16))
        world.hosp_refs[i] = RecordRef(rng.randbytes(16))
    world.declare(gp_cred, "reg", ["AGE_BAND", "LTC", "SECRET"], DatasetKind.RECORDS)
    world.declare(hosp_cred, "pas", ["AE", "ADM"], DatasetKind.RECORDS)
    world.declare(ndop_cred, "register", [], DatasetKind.RECORDS)
    if designate_register:
        # Only the operator makes a dataset an opt-out register (broker/opt_out_registers.py).
        declare_opt_out_register(
            broker.runtime.store,
            dataset=f"{ndop}/register",
            body="NHS England: National Data Opt-out",
            now=utc_now(),
        )
    gp_people = list(GP_PERSONS)
    world.upload(
        gp_cred,
        "reg",
        gp_people,
        world.gp_refs,
        [(age_band(i), ltc(i), f"secret-{i}") for i in gp_people],
        ["AGE_BAND", "LTC", "SECRET"],
    )
    hosp_people = list(HOSPITAL_PERSONS)
    world.upload(
        hosp_cred,
        "pas",
        hosp_people,
        world.hosp_refs,
        [(ae(i), admissions(i)) for i in hosp_people],
        ["AE", "ADM"],
    )
    return world
