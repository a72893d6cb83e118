"""Threat model: a revoked credential is refused from the very next request, everywhere."""

from __future__ import annotations

from keys.wire import Role
from tests.support.harness import unique


def test_revocation_takes_effect_at_once_for_every_role(broker_server):
    for role in Role:
        name = unique(role.value)
        credential = broker_server.add_identity(role, name)
        with broker_server.client(credential) as http:
            assert http.get("/v1/whoami").status_code == 200
            broker_server.revoke(name)
            answer = http.get("/v1/whoami")
            assert answer.status_code == 401
            assert answer.json()["code"] == "unauthorised"
