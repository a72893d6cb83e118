"""TLS between the SDK and the broker: HTTPS serving, certificate checks, no clear-text
credential to a remote host, and mutual TLS.

Certificates come from a throwaway CA made at test time (tests/support/tls_material.py); nothing
here leaves this machine: the refused remote address (192.0.2.1, TEST-NET-1) is refused
from its URL, and a transport that records every request proves nothing was sent.
"""

from __future__ import annotations

import re
import secrets
import subprocess
import sys
from pathlib import Path

import click
import httpx
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from client_sdk.cli.broker import cli_transport_options, insecure_http_option
from client_sdk.client import BrokerClient
from client_sdk.errors import BrokerCallError
from tests.support.harness import free_port, make_batch, random_refs, random_tokens, unique
from tests.support.tls_material import (
    TlsMaterial,
    make_tls_material,
    tls_broker,
    without_tessera_env,
)

BIN = Path(sys.executable).parent
REMOTE = "http://192.0.2.1:8470"


def _run(tool: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / tool), *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsMaterial:
    return make_tls_material(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def https_broker(tmp_path_factory, tls):
    with tls_broker(tmp_path_factory.mktemp("tls-broker"), tls) as broker:
        yield broker


def _org(broker) -> tuple[str, str]:
    result = _run("tessera-broker", "admin", "org", "add", unique("gp"), env=broker.admin_env())
    assert result.returncode == 0, result.stderr
    return result.stdout.strip(), result.stderr


def _sdk_env(broker, credential: str, **extra: str) -> dict[str, str]:
    env = without_tessera_env()
    env.update({"TESSERA_SDK_TOKEN": credential, "TESSERA_SDK_BROKER_URL": broker.url, **extra})
    return env


def test_upload_over_https_with_the_ca_bundle(https_broker, tls, tmp_path):
    credential, _ = _org(https_broker)
    env = _sdk_env(https_broker, credential, TESSERA_SDK_CA_BUNDLE=str(tls.ca_cert))
    dataset, domain = unique("regs"), unique("dom")
    batch = tmp_path / "gp.tsb"
    make_batch(batch, dataset=dataset, refs=random_refs(60, seed=3),
               tokens=random_tokens(60, 2, seed=3), chunk_size=20, domain=domain)  # fmt: skip
    declared = _run("tessera-sdk", "dataset", "declare", dataset, "--from-batch", str(batch),
                    "--one-record-per-person", env=env)  # fmt: skip
    assert declared.returncode == 0, declared.stderr
    uploaded = _run("tessera-sdk", "upload", str(batch), "--no-progress", env=env)
    assert uploaded.returncode == 0, uploaded.stderr
    assert "60 records" in uploaded.stdout and "linked" in uploaded.stdout


@pytest.mark.parametrize("bundle", [None, "other"])
def test_an_untrusted_certificate_is_refused_in_one_line(https_broker, tls, bundle):
    credential, _ = _org(https_broker)
    extra = {"TESSERA_SDK_CA_BUNDLE": str(tls.other_ca_cert)} if bundle else {}
    result = _run("tessera-sdk", "whoami", env=_sdk_env(https_broker, credential, **extra))
    assert result.returncode == 14
    assert result.stderr.count("\n") == 1, result.stderr
    assert "certificate is not trusted" in result.stderr
    assert "TESSERA_SDK_CA_BUNDLE" in result.stderr and "Traceback" not in result.stderr
    assert credential not in result.stderr


def test_the_https_broker_does_not_answer_plain_http(https_broker):
    plain = https_broker.url.replace("https://", "http://")
    with pytest.raises(httpx.HTTPError):
        httpx.get(plain + "/readyz", timeout=5)


def test_a_missing_ca_bundle_is_a_one_line_error(https_broker, tmp_path):
    credential, _ = _org(https_broker)
    env = _sdk_env(https_broker, credential, TESSERA_SDK_CA_BUNDLE=str(tmp_path / "no.pem"))
    result = _run("tessera-sdk", "whoami", env=env)
    assert result.returncode == 14 and result.stderr.count("\n") == 1, result.stderr
    assert "cannot read the CA bundle" in result.stderr


class _Recorder(httpx.BaseTransport):
    """Answers every request locally and remembers it (proves what would have been sent)."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(200, json={"id": "id_x", "name": "gp", "role": "org"})


def test_plain_http_to_a_remote_host_is_refused_before_any_connection():
    recorder = _Recorder()
    with pytest.raises(BrokerCallError) as refused:
        BrokerClient(REMOTE, "tsk_secret", transport=recorder)
    assert refused.value.code == "insecure_transport"
    assert "192.0.2.1" in str(refused.value) and "tsk_secret" not in str(refused.value)
    assert recorder.requests == []


def test_insecure_http_lets_the_request_through_to_the_transport():
    recorder = _Recorder()
    with BrokerClient(REMOTE, "tsk_secret", transport=recorder, insecure_http=True) as client:
        client.whoami()
    assert [str(r.url) for r in recorder.requests] == [REMOTE + "/v1/whoami"]


@settings(deadline=None)  # each example loads a CA bundle: slow on a shared machine
@given(st.ip_addresses(v=4))
def test_plain_http_passes_exactly_for_loopback_addresses(address):
    recorder = _Recorder()
    url = f"http://{address}:8470"
    if address.is_loopback:
        BrokerClient(url, "tsk_x", transport=recorder).close()
    else:
        with pytest.raises(BrokerCallError):
            BrokerClient(url, "tsk_x", transport=recorder)
    assert recorder.requests == []


def test_the_sdk_cli_refuses_http_to_a_remote_host():
    env = without_tessera_env()
    env.update({"TESSERA_SDK_TOKEN": "tsk_" + "x" * 30, "TESSERA_SDK_BROKER_URL": REMOTE})
    result = _run("tessera-sdk", "whoami", env=env)
    assert result.returncode == 14 and result.stderr.count("\n") == 1, result.stderr
    assert "refusing to send a credential over plain http://" in result.stderr
    assert "xxxxxxxx" not in result.stderr


@pytest.mark.parametrize(
    ("args", "env", "allowed"),
    [
        ([], {}, False),
        (["--insecure-http"], {}, True),
        ([], {"TESSERA_SDK_INSECURE_HTTP": "1"}, True),
    ],
)
def test_insecure_http_comes_from_the_flag_or_the_setting(monkeypatch, args, env, allowed):
    # The real option and settings, on a command that only reports what it would use:
    # letting the real CLI through would send traffic off this machine.
    monkeypatch.delenv("TESSERA_SDK_INSECURE_HTTP", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    seen: list[dict[str, object]] = []

    @click.command()
    @insecure_http_option
    def probe() -> None:
        seen.append(cli_transport_options())

    result = CliRunner().invoke(probe, args)
    assert result.exit_code == 0, result.output
    assert seen[0]["insecure_http"] is allowed


def test_mutual_tls_needs_the_client_certificate(tmp_path, tls):
    with tls_broker(tmp_path / "mtls", tls, mutual=True) as broker:
        credential, _ = _org(broker)
        bare = _sdk_env(broker, credential, TESSERA_SDK_CA_BUNDLE=str(tls.ca_cert))
        refused = _run("tessera-sdk", "whoami", env=bare)
        assert refused.returncode == 14 and refused.stderr.count("\n") == 1, refused.stderr
        assert "client certificate" in refused.stderr, refused.stderr
        with_cert = {
            **bare,
            "TESSERA_SDK_TLS_CLIENT_CERT": str(tls.client_cert),
            "TESSERA_SDK_TLS_CLIENT_KEY": str(tls.client_key),
        }
        accepted = _run("tessera-sdk", "whoami", env=with_cert)
        assert accepted.returncode == 0, accepted.stderr
        assert "org" in accepted.stdout


@pytest.mark.parametrize(
    ("env_of", "message"),
    [
        (lambda t: {"TESSERA_BROKER_TLS_CERT": str(t.server_cert)}, "or neither"),
        (
            lambda t: {
                "TESSERA_BROKER_TLS_CERT": str(t.server_cert),
                "TESSERA_BROKER_TLS_KEY": str(t.client_key),
            },
            "cannot load the certificate and key",
        ),  # fmt: skip
        (
            lambda t: {
                "TESSERA_BROKER_TLS_CERT": str(t.server_cert),
                "TESSERA_BROKER_TLS_KEY": str(t.server_key) + ".missing",
            },
            "is not a readable file",
        ),  # fmt: skip
    ],
)
def test_serve_refuses_bad_tls_settings_in_one_line(tmp_path, tls, env_of, message):
    env = without_tessera_env()
    env.update({
        "TESSERA_BROKER_DATA_DIR": str(tmp_path / "data"),
        "TESSERA_BROKER_KEYSTORE_PASSPHRASE": "test-passphrase-for-tls-settings",
        **env_of(tls),
    })  # fmt: skip
    result = _run("tessera-broker", "serve", "--port", "1", env=env)
    assert result.returncode != 0
    assert result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr


def _deploying_block() -> str:
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = text[text.index("## Deploying") : text.index("## Configuration")]
    (block,) = re.findall(r"```sh\n(.*?)```", section, flags=re.S)
    return block


def test_the_readme_deploying_block_runs_as_written(tmp_path, tls):
    port = free_port()
    script = (
        _deploying_block()
        .replace("/etc/tessera/tls/broker.pem", str(tls.server_cert))
        .replace("/etc/tessera/tls/broker.key", str(tls.server_key))
        .replace("/etc/tessera/tls/ca.pem", str(tls.ca_cert))
        .replace("broker.example.nhs.uk", "localhost")
        .replace("--host 0.0.0.0", "--host 127.0.0.1")  # never listen beyond this machine
        .replace("8470", str(port))
    )
    env = without_tessera_env()
    env["PATH"] = f"{BIN}:{env['PATH']}"
    env["TESSERA_BROKER_DATA_DIR"] = str(tmp_path / "data")
    env["TESSERA_BROKER_KEYSTORE_PASSPHRASE"] = "readme-" + secrets.token_hex(12)
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script + "\nkill %1\nwait %1 || true\n"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr + (tmp_path / "broker.log").read_text()
    assert "gp-b" in result.stdout and "org" in result.stdout
