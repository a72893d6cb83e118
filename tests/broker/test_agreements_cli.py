"""``tessera-broker admin agreement create|list|show|revoke`` against the real broker."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from broker.cli import cli as broker_cli
from client_sdk.cli import cli as sdk_cli
from tests.support.governance_terms import governance_toml
from tests.support.release_world import World, build_world, today

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def world(broker_server, tmp_path_factory) -> World:
    return build_world(broker_server, tmp_path_factory.mktemp("agreements-cli"))


def _toml(world: World, **extra: str) -> str:
    start, end = today() - timedelta(days=1), today() + timedelta(days=10)
    lines = {
        "title": '"Frailty study"',
        "purpose": '"To learn how frailty relates to emergency care."',
        "legal_basis": '"Section 251 of the NHS Act 2006"',
        "kind": '"research_record_level"',
        "researchers": f'["{world.researcher}"]',
        "start": str(start),
        "end": str(end),
        **extra,
    }
    head = "\n".join(f"{k} = {v}" for k, v in lines.items())
    return (
        head
        + "\n"
        + governance_toml(start=start, end=end)
        + f'\n\n[[datasets]]\norg = "{world.gp}"\nname = "reg"\nfields = ["LTC"]\n'
        + f'\n[[datasets]]\norg = "{world.hosp}"\nname = "pas"\nfields = ["AE"]\n'
    )


def _admin(world: World, *args: str):
    result = CliRunner().invoke(
        broker_cli, ["admin", "agreement", *args], env=dict(world.broker.env),
        catch_exceptions=False,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return result


def test_create_show_list_revoke(world, tmp_path):
    path = tmp_path / "a.toml"
    path.write_text(_toml(world))
    created = _admin(world, "create", "--file", str(path))
    agreement_id = created.stdout.strip()
    assert agreement_id.startswith("dsa-")
    assert "approvals needed from" in created.stderr and world.gp in created.stderr
    shown = json.loads(_admin(world, "show", agreement_id).stdout)
    assert shown["status"] == "draft" and shown["terms"]["opt_outs_apply"] is True
    assert shown["contributors"] == sorted([world.gp, world.hosp])
    assert f"{agreement_id}\tdraft\tresearch_record_level" in _admin(world, "list").stdout
    _admin(world, "revoke", agreement_id)
    assert json.loads(_admin(world, "show", agreement_id).stdout)["status"] == "revoked"


def test_an_unusual_legal_basis_is_noted(world, tmp_path):
    path = tmp_path / "b.toml"
    path.write_text(_toml(world, legal_basis='"A local byelaw"'))
    created = _admin(world, "create", "--file", str(path))
    assert "not one of the common UK gateways" in created.stderr


def test_bad_files_fail_with_one_line_and_an_exit_code(world, tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(_toml(world, kind='"research_record_level"\nend = 2001-01-01'))
    bad_dates = tmp_path / "dates.toml"
    bad_dates.write_text(_toml(world, start=str(today()), end=str(today() - timedelta(days=3))))
    bad_field = tmp_path / "field.toml"
    bad_field.write_text(_toml(world).replace('fields = ["AE"]', 'fields = ["ADM", "NOPE"]'))
    for file, message in (
        (path, "cannot read agreement TOML"),
        (bad_dates, "end is before start"),
        (bad_field, "no payload field 'NOPE'"),
    ):
        result = subprocess.run(
            [str(BIN / "tessera-broker"), "admin", "agreement", "create", "--file", str(file)],
            env=world.broker.admin_env(), capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        err = result.stderr.strip()
        assert result.returncode == 25, err
        assert message in err and "\n" not in err and "Traceback" not in err


def _sdk(world: World, credential: str, *args: str):
    env = {"TESSERA_SDK_TOKEN": credential, "TESSERA_SDK_BROKER_URL": world.broker.url}
    return CliRunner().invoke(sdk_cli, list(args), env=env)


def test_sdk_agreement_show_list_approve(world, tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(_toml(world))
    agreement_id = _admin(world, "create", "--file", str(path)).stdout.strip()
    shown = _sdk(world, world.gp_cred, "agreement", "show", agreement_id)
    assert shown.exit_code == 0, shown.output
    assert "status:      draft" in shown.stdout
    assert "legal basis: Section 251 of the NHS Act 2006" in shown.stdout
    assert f"approval:    {world.gp}: awaited" in shown.stdout
    partly = _sdk(world, world.gp_cred, "agreement", "approve", agreement_id)
    assert partly.exit_code == 0 and f"still awaiting {world.hosp}" in partly.stderr
    done = _sdk(world, world.hosp_cred, "agreement", "approve", agreement_id)
    assert done.exit_code == 0 and "now active" in done.stderr
    listed = _sdk(world, world.researcher_cred, "agreement", "list")
    assert f"{agreement_id}\tactive\tresearch_record_level" in listed.stdout
    refused = _sdk(world, world.researcher_cred, "agreement", "approve", agreement_id)
    assert refused.exit_code != 0
