"""The ICO data sharing code's fields: required of a new agreement, every gap named at once."""

from __future__ import annotations

import secrets
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from broker.agreements import create_agreement, get_agreement
from broker.errors import BadRequestError
from broker.store.agreements_store import insert_agreement
from keys.wire_release import REQUIRED_GOVERNANCE_FIELDS, AgreementTerms
from tests.support.release_world import World, build_world, today

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def world(broker_server, tmp_path_factory) -> World:
    return build_world(broker_server, tmp_path_factory.mktemp("agreements-governance"))


def _without(world: World, *names: str) -> AgreementTerms:
    data = world.terms().model_dump()
    for name in names:
        data.pop(name)
    return AgreementTerms.model_validate(data)


def test_every_missing_governance_field_is_listed_in_one_refusal(world):
    store = world.broker.runtime.store
    terms = _without(world, *REQUIRED_GOVERNANCE_FIELDS)
    with pytest.raises(BadRequestError) as raised:
        create_agreement(store, terms, created_by="operator", role="operator")
    message = str(raised.value)
    for name in REQUIRED_GOVERNANCE_FIELDS:
        assert f"{name} is required" in message


def test_missing_fields_are_listed_with_other_problems(world):
    terms = _without(world, "dpia_reference", "controllers")
    data = {**terms.model_dump(), "datasets": [{"org": world.gp, "name": "nothere"}]}
    with pytest.raises(BadRequestError) as raised:
        create_agreement(
            world.broker.runtime.store,
            AgreementTerms.model_validate(data),
            created_by="operator",
            role="operator",
        )
    message = str(raised.value)
    assert "dpia_reference is required" in message and "controllers is required" in message
    assert "not declared" in message and "objective" not in message


def test_a_complete_agreement_keeps_its_governance_fields(world):
    agreement = world.agreement(approve=False)
    stored = get_agreement(world.broker.runtime.store, agreement.id).terms
    assert stored.missing_governance() == []
    assert stored.confidentiality_basis is not None
    assert stored.confidentiality_basis.value == "s251"
    assert stored.retention_until is not None and stored.retention_until >= stored.end
    assert stored.sublicensing is False


def test_an_agreement_stored_before_the_fields_existed_still_loads(world):
    old = _without(world, *REQUIRED_GOVERNANCE_FIELDS, "processors", "sublicensing")
    store = world.broker.runtime.store
    agreement_id = "dsa-" + secrets.token_hex(5)
    assert insert_agreement(
        store,
        agreement_id=agreement_id,
        terms_json=old.model_dump_json(exclude_defaults=True),
        created_at="2026-01-01T00:00:00.000+00:00",
        created_by="operator",
    )
    loaded = get_agreement(store, agreement_id).terms
    assert set(loaded.missing_governance()) == set(REQUIRED_GOVERNANCE_FIELDS)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"retention_until": today()}, "retention_until is before the end"),
        ({"review_dates": [today() - timedelta(days=30)]}, "review date is before the start"),
        ({"confidentiality_basis": "because"}, "confidentiality_basis"),
    ],
)
def test_governance_fields_are_validated(world, change, message):
    with pytest.raises(ValueError, match=message):
        world.terms(**change)


def test_an_old_style_toml_is_refused_by_the_cli_in_one_line_naming_each_field(world, tmp_path):
    path = tmp_path / "old.toml"
    path.write_text(
        'title = "Frailty"\npurpose = "To learn."\n'
        'legal_basis = "Section 251 of the NHS Act 2006"\n'
        f'kind = "research_record_level"\nresearchers = ["{world.researcher}"]\n'
        f"start = {today()}\nend = {today() + timedelta(days=5)}\n\n"
        f'[[datasets]]\norg = "{world.gp}"\nname = "reg"\nfields = ["LTC"]\n'
    )
    result = subprocess.run(
        [str(BIN / "tessera-broker"), "admin", "agreement", "create", "--file", str(path)],
        env=world.broker.admin_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    err = result.stderr.strip()
    assert result.returncode != 0 and "\n" not in err and "Traceback" not in err
    assert all(f"{name} is required" in err for name in REQUIRED_GOVERNANCE_FIELDS)
