"""Schemathesis against a real broker on loopback: no 5xx and no undocumented status.

Every operation of the broker's own OpenAPI document gets a bounded number of generated
requests, valid ones and invalid ones, each with the credential of a role the operation
admits (so that they reach the route, not just the role check). Each answer must not be
a server error and must carry a status the operation documents.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import status_code_conformance

from keys.wire import Role
from tests.support.harness import BrokerProcess, start_broker, unique

EXAMPLES_PER_OPERATION = 12


@pytest.fixture(scope="module")
def fuzzed_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    """A broker of this test's own: what it is sent must not disturb other tests."""
    broker = start_broker(tmp_path_factory.mktemp("fuzzed-broker"))
    yield broker
    broker.stop()


def _role_for(method: str, path: str) -> Role:
    """A role the operation admits."""
    if path.startswith("/v1/audit/"):
        return Role.ADMIN if method == "POST" else Role.AUDITOR
    if path.endswith(("/cohort", "/aggregate")):
        return Role.RESEARCHER
    if path.startswith("/v1/orgs/{org}") or path == "/v1/linkage/report":
        return Role.ADMIN
    if method == "POST" and path == "/v1/agreements":
        return Role.ADMIN
    return Role.ORG


def _fuzz(
    operation: schemathesis.APIOperation,
    mode: GenerationMode,
    *,
    url: str,
    headers: dict[str, str],
    failures: list[str],
    statuses: Counter[int],
) -> None:
    """Send the operation's generated requests; collect each failed check."""
    label = f"{operation.method.upper()} {operation.path} ({mode.value})"

    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def exercise(case: schemathesis.Case) -> None:
        response = case.call(base_url=url, headers=headers, timeout=30)
        statuses[response.status_code // 100] += 1
        try:
            case.validate_response(response, checks=[not_a_server_error, status_code_conformance])
        except Exception as exc:  # noqa: BLE001 - each failure is collected, not raised
            failures.append(f"{label}: HTTP {response.status_code} {response.text[:200]} {exc}")

    try:
        exercise()
    except Unsatisfiable:
        assert mode is GenerationMode.NEGATIVE  # nothing to get wrong (no parameters)


def test_no_server_errors_and_no_undocumented_statuses(fuzzed_broker):
    credentials = {role: fuzzed_broker.add_identity(role, unique(role.value)) for role in Role}
    document = httpx.get(fuzzed_broker.url + "/openapi.json").json()
    schema = schemathesis.openapi.from_dict(document)
    failures: list[str] = []
    statuses: Counter[int] = Counter()
    operations = 0
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result.err()
        operation = result.ok()
        operations += 1
        role = _role_for(operation.method.upper(), operation.path)
        headers = {"Authorization": f"Bearer {credentials[role]}"}
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _fuzz(
                operation,
                mode,
                url=fuzzed_broker.url,
                headers=headers,
                failures=failures,
                statuses=statuses,
            )
    assert operations > 20
    assert statuses[2] > operations  # the requests reach the routes, not just the guards
    assert not failures, "\n".join(failures[:20])
