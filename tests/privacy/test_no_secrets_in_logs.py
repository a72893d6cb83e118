"""Threat model: no credential, token or reference ever reaches the broker's log or the
SDK's output, across a full upload through the CLIs."""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path

from keys.batch import BatchReader
from tests.support.harness import make_batch, random_refs, random_tokens, unique

BIN = Path(sys.executable).parent


def _forms(value: bytes) -> list[str]:
    return [value.hex(), value.hex().upper(), base64.b64encode(value).decode().rstrip("=")]


def test_full_upload_logs_no_credential_token_or_reference(broker_server, tmp_path):
    org, credential = broker_server.add_org()
    dataset, domain = unique("ds"), unique("dom")
    batch = tmp_path / "b.tsb"
    make_batch(
        batch,
        dataset=dataset,
        refs=random_refs(40, seed=9),
        tokens=random_tokens(40, 2, seed=9),
        domain=domain,
        chunk_size=10,
    )
    env = broker_server.sdk_env(credential)
    outputs = []
    for args in (
        ["dataset", "declare", dataset, "--from-batch", str(batch), "--one-record-per-person"],
        ["upload", str(batch), "--debug"],
    ):
        done = subprocess.run(
            [str(BIN / "tessera-sdk"), *args], env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        outputs += [done.stdout, done.stderr]
    text = "\n".join(outputs) + broker_server.log_text()
    assert credential not in text
    assert credential[4:] not in text
    for chunk in BatchReader(batch).chunks():
        for ref in chunk.refs:
            assert not any(form in text for form in _forms(ref))
        for row in chunk.tokens:
            for token in row:
                if token is not None:
                    assert not any(form in text for form in _forms(token))
