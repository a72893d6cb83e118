"""``/metrics`` over real HTTP and HTTPS: who may read it, what it counts after an upload,
that its labels are route templates (never a dataset name), and that the example alert
rules only use metrics the broker really exposes.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from broker.metrics import render
from broker.store.client import Store
from client_sdk.client import BrokerClient
from keys.wire import BatchState, DatasetDeclaration, Role
from tests.support.harness import make_batch, random_refs, random_tokens, running_broker, unique
from tests.support.tls_material import make_tls_material, tls_broker

ALERTS = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "alerts.yml"
CHUNK_ROUTE = "/v1/datasets/{name}/batches/{batch_id}/chunks/{index}"
TOKEN = secrets.token_urlsafe(32)


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def _value(samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


@pytest.fixture(scope="module")
def metered(tmp_path_factory):
    data = tmp_path_factory.mktemp("metrics-broker")
    env = {"TESSERA_BROKER_METRICS_TOKEN": TOKEN, "TESSERA_BROKER_AUDIT_CHECKPOINT_EVERY": "2"}
    with running_broker(data, **env) as broker:
        yield broker


def _scrape_until(broker, name: str, *, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    with broker.client(TOKEN) as http:
        while True:
            samples = _samples(http.get("/metrics").text)
            if (name, ()) in samples or time.monotonic() > deadline:
                return samples
            time.sleep(0.2)


def _upload(broker, tmp_path: Path, *, n: int = 90, ca_bundle: Path | None = None) -> str:
    _, credential = broker.add_org()
    dataset, domain = unique("regs"), unique("dom")
    batch = tmp_path / "batch.tsb"
    make_batch(batch, dataset=dataset, refs=random_refs(n, seed=5),
               tokens=random_tokens(n, 2, seed=5), chunk_size=30, domain=domain)  # fmt: skip
    with BrokerClient(broker.url, credential, ca_bundle=ca_bundle) as client:
        client.declare_dataset(
            DatasetDeclaration(
                name=dataset, domain=domain, key_version="v1", spec_hash="spec-test-1",
                match_keys=["nhs", "name_dob"],
                one_record_per_person=True,
            )
        )  # fmt: skip
        assert client.upload(batch, poll=0.05).state is BatchState.LINKED
    return dataset


def test_an_upload_is_counted_by_route_template(metered, tmp_path):
    dataset = _upload(metered, tmp_path)
    with metered.client(TOKEN) as http:
        response = http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = response.text
    assert dataset not in text  # labels are templates, never a dataset name
    samples = _samples(text)
    assert _value(samples, "tessera_chunks_received_total") == 3
    assert _value(samples, "tessera_records_received_total") == 90
    assert _value(samples, "tessera_records_linked_total") == 90
    puts = _value(
        samples, "tessera_http_requests_total", method="PUT", route=CHUNK_ROUTE, status="200"
    )
    assert puts == 3
    count = _value(
        samples, "tessera_http_request_duration_seconds_count", method="PUT", route=CHUNK_ROUTE
    )
    assert count == 3
    assert _value(samples, "tessera_link_queue_depth") == 0
    assert _value(samples, "tessera_link_queue_lag_seconds") == 0
    assert _value(samples, "tessera_store_up") == 1
    assert _value(samples, "tessera_audit_entries_unchecked") >= 0
    # The checkpointer signs every 2 s at most; its gauge appears once it has signed one.
    checkpointed = _scrape_until(metered, "tessera_audit_checkpoint_age_seconds")
    assert _value(checkpointed, "tessera_audit_checkpoint_age_seconds") >= 0


def test_a_second_scrape_sees_the_first(metered):
    with metered.client(TOKEN) as http:
        http.get("/metrics")
        samples = _samples(http.get("/metrics").text)
    assert (
        _value(samples, "tessera_http_requests_total", method="GET", route="/metrics", status="200")
        >= 1
    )


@pytest.mark.parametrize(
    ("role", "status"), [(None, 401), (Role.ORG, 403), (Role.RESEARCHER, 403), (Role.ADMIN, 200)]
)
def test_only_the_metrics_token_or_an_administrator_may_read_it(metered, role, status):
    credential = metered.add_identity(role, unique("who")) if role is not None else "wrong-" + TOKEN
    with metered.client(credential) as http:
        assert http.get("/metrics").status_code == status
    with metered.client() as anonymous:
        assert anonymous.get("/metrics").status_code == 401


def test_log_lines_keep_their_request_id(metered):
    with metered.client(TOKEN) as http:
        request_id = http.get("/metrics").headers["x-request-id"]

    def mine() -> list[dict[str, str]]:
        lines = metered.log_text().splitlines()
        logged = [json.loads(line) for line in lines if line.startswith("{")]
        return [line for line in logged if line.get("request_id") == request_id]

    # the access line is written after the response has gone out: wait for it, a while
    deadline = time.monotonic() + 10
    while not mine() and time.monotonic() < deadline:
        time.sleep(0.05)
    found = mine()
    assert found and "GET /metrics 200" in found[-1]["message"]


def test_metrics_over_https(tmp_path):
    tls = make_tls_material(tmp_path / "tls")
    with tls_broker(tmp_path / "data", tls, TESSERA_BROKER_METRICS_TOKEN=TOKEN) as broker:
        _upload(broker, tmp_path, ca_bundle=tls.ca_cert)
        with broker.client(TOKEN) as http:
            response = http.get("/metrics")
        with pytest.raises(httpx.ConnectError):
            httpx.get(broker.url + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    samples = _samples(response.text)
    assert _value(samples, "tessera_records_linked_total") == 90
    assert (
        _value(
            samples, "tessera_http_requests_total", method="PUT", route=CHUNK_ROUTE, status="200"
        )
        == 3
    )


def test_a_dead_redis_is_a_redis_error_and_store_down(tmp_path):
    store = Store(f"unix://{tmp_path / 'nobody.sock'}", socket_timeout=1.0)
    try:
        first = _samples(render(store).decode())
        second = _samples(render(store).decode())
    finally:
        store.close()
    assert _value(first, "tessera_store_up") == 0
    assert ("tessera_link_queue_depth", ()) not in first
    errors = "tessera_redis_errors_total"
    assert _value(second, errors, where="metrics") == _value(first, errors, where="metrics") + 1


def test_the_example_alert_rules_use_only_exposed_metrics(metered):
    rules = yaml.safe_load(ALERTS.read_text())
    with metered.client(TOKEN) as http:
        exposed = {
            family.name for family in text_string_to_metric_families(http.get("/metrics").text)
        }
    exposed |= {f"{name}_total" for name in exposed} | {f"{name}_bucket" for name in exposed}
    exposed |= {f"{name}_count" for name in exposed} | {f"{name}_sum" for name in exposed}
    exposed.add("up")
    alerts = [rule for group in rules["groups"] for rule in group["rules"]]
    assert alerts
    for rule in alerts:
        assert {"alert", "expr", "labels", "annotations"} <= rule.keys(), rule
        used = set(re.findall(r"\b(?:tessera_[a-z_]+|up)\b", rule["expr"]))
        assert used and used <= exposed, (rule["alert"], used - exposed)
