"""How the SDK's HTTP clients treat the credential in TESSERA_SDK_TOKEN, through the real
``tessera-sdk`` CLI against a real broker: surrounding whitespace (a file saved on
Windows, ``$(cat file)``) is dropped; anything else malformed is one line that says what
is wrong, exit 14, never a traceback and never the credential."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from client_sdk.client import BrokerClient
from client_sdk.errors import BrokerCallError

_SDK = [sys.executable, "-c", "from client_sdk.cli import main; main()"]


def _whoami(broker_server, credential: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*_SDK, "whoami"],
        env=broker_server.sdk_env(credential),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("around", [" ", "\r", "\r\n", "\n", "\t ", " \r\n"])
def test_surrounding_whitespace_is_dropped(broker_server, around):
    org, credential = broker_server.add_org()
    result = _whoami(broker_server, around + credential + around)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"org {org}"


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (lambda c: c[:8] + "é" + c[8:], "non-ASCII"),
        (lambda c: c.replace("tsk_", "tsk_\u2013"), "non-ASCII"),
        (lambda c: c[:8] + " " + c[8:], "space or control character"),
        (lambda c: c[:8] + "\r" + c[8:], "space or control character"),
        (lambda c: c[:8] + '"' + c[8:], "a character no credential has"),
        (lambda c: "   ", "empty"),
    ],
)
def test_a_malformed_credential_is_one_line_without_the_credential(broker_server, damage, problem):
    _, credential = broker_server.add_org()
    bad = damage(credential)
    result = _whoami(broker_server, bad)
    assert result.returncode == 14
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "credential (TESSERA_SDK_TOKEN) is malformed" in lines[0]
    assert problem in lines[0]
    assert "Traceback" not in result.stderr
    assert credential[8:] not in result.stderr
    assert "LocalProtocolError" not in result.stderr


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=80))
def test_any_credential_text_either_passes_stripped_or_is_refused_cleanly(text):
    try:
        client = BrokerClient("http://127.0.0.1:9", text)
    except BrokerCallError as exc:
        assert exc.code == "bad_credential"
        assert "\n" not in str(exc)
        assert len(text.strip()) < 4 or text.strip() not in str(exc)  # never echoed
        return
    with client:
        header = client._http.headers["Authorization"]
    assert header == "Bearer " + text.strip()
