"""A broker with something to show on the register and the dashboard.

On top of tests/support/release_world.py's linked GP and hospital: an active agreement with a
hostile title that has been released under twice, a revoked one, a draft awaiting the
hospital's approval, a dataset whose quality grade rose from Bronze to Silver, an admin
and an auditor.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from broker.agreements import Agreement, approve_agreement, revoke_agreement
from broker.release import release_cohort
from broker.store.identities import find_identity
from client_sdk.client import BrokerClient
from keys.wire import DatasetDeclaration, DatasetKind, Role
from keys.wire_release import CohortRequest
from tests.support.harness import BrokerProcess, make_batch, random_refs, random_tokens, unique
from tests.support.release_world import World, build_world, today

__all__ = [
    "HOSTILE_CONTROLLER",
    "HOSTILE_DPIA",
    "HOSTILE_TITLE",
    "Transparency",
    "build_transparency",
]

HOSTILE_TITLE = "<script>alert(1)</script> Frailty & <b>emergency</b> care"
HOSTILE_CONTROLLER = "<img src=x onerror=alert(2)> Somerset & Dorset ICB"
HOSTILE_DPIA = '=HYPERLINK("x")<i>DPIA-7</i>'


@dataclass
class Transparency:
    """What :func:`build_transparency` made."""

    world: World
    active: Agreement
    tables: Agreement
    """An active aggregate agreement under the OpenSAFELY "midpoint 6" profile."""
    revoked: Agreement
    draft: Agreement
    graded_dataset: str
    admin: str
    admin_cred: str
    auditor: str
    auditor_cred: str
    victim: str
    secrets: list[str]
    """Strings that must never appear on a page: references, tokens, credentials."""


def _graded_uploads(broker: BrokerProcess, tmp: Path, domain: str) -> tuple[str, list[str]]:
    org, credential = broker.add_org(unique("gp-q"))
    name = "list"
    leaked: list[str] = [credential]
    with BrokerClient(broker.url, credential, backoff=0.01) as client:
        client.declare_dataset(
            DatasetDeclaration(
                name=name,
                description="Registered patients, monthly extract",
                one_record_per_person=True,
                domain=domain,
                spec_hash="spec-test-1",
                key_version="v1",
                match_keys=["nhs", "name_dob"],
                payload_columns=[],
                kind=DatasetKind.RECORDS,
            )
        )
        for seed, grade in ((31, "Bronze"), (32, "Silver")):
            refs = random_refs(12, seed=seed)
            tokens = random_tokens(12, 2, seed=seed)
            leaked += [r.hex() for r in refs] + [t.hex() for row in tokens for t in row if t]
            path = tmp / f"{unique('graded')}.tsb"
            make_batch(
                path,
                dataset=name,
                refs=refs,
                tokens=tokens,
                domain=domain,
                quality={"grade": grade, "records_used": 12},
            )
            client.upload(path, poll=0.05, wait_timeout=120)
    return f"{org}/{name}", leaked


def build_transparency(broker: BrokerProcess, tmp: Path) -> Transparency:
    """Build the world (takes a few seconds: two small linked datasets)."""
    world = build_world(broker, tmp)
    store = broker.runtime.store
    active = world.agreement(
        title=HOSTILE_TITLE,
        purpose="To see whether =SUM(A1) is safe.",
        controllers=[HOSTILE_CONTROLLER, "Somerset NHS Foundation Trust"],
        dpia_reference=HOSTILE_DPIA,
    )
    tables = world.agreement(
        title="Counts of frailty by age band",
        kind="research_aggregate",
        datasets=[{"org": world.gp, "name": "reg", "fields": ["AGE_BAND"]}],
        sdc_profile="opensafely",
        sdc_rounding="midpoint-6",
        sublicensing=True,
    )
    researcher = find_identity(store, world.researcher)
    for _ in range(2):
        release_cohort(
            store,
            active,
            CohortRequest(),
            identity=researcher,
            pseudonym_master=broker.runtime.secrets.pseudonym_master,
        )
    revoked = world.agreement(title="Withdrawn study of falls")
    revoke_agreement(store, revoked.id, by="operator", role="operator")
    draft = world.agreement(approve=False, title="Diabetes outcomes draft")
    approve_agreement(store, draft.id, org=find_identity(store, world.gp))
    world.agreement(
        title="Future study not yet started",
        start=today() + timedelta(days=10),
        end=today() + timedelta(days=20),
    )
    graded, leaked = _graded_uploads(broker, tmp, world.domain)
    admin = unique("admin")
    admin_cred = broker.add_identity(Role.ADMIN, admin)
    auditor = unique("auditor")
    auditor_cred = broker.add_identity(Role.AUDITOR, auditor)
    victim = unique("victim-org")
    broker.add_org(victim)
    leaked += [world.gp_cred, world.hosp_cred, world.researcher_cred, admin_cred, auditor_cred]
    leaked += [r.hex() for r in world.gp_refs.values()] + [
        t.hex() for pair in world.tokens.values() for t in pair
    ]
    return Transparency(
        world=world,
        active=active,
        tables=tables,
        revoked=revoked,
        draft=draft,
        graded_dataset=graded,
        admin=admin,
        admin_cred=admin_cred,
        auditor=auditor,
        auditor_cred=auditor_cred,
        victim=victim,
        secrets=leaked,
    )
