"""BrokerClient retries connection errors and 5xx with backoff, against a real broker."""

from __future__ import annotations

import httpx
import pytest

from client_sdk.client import BrokerClient
from client_sdk.errors import BrokerCallError


class FlakyNetwork(httpx.HTTPTransport):
    """A real transport that first fails ``drops`` times, then answers ``errors`` 503s."""

    def __init__(self, *, drops: int = 0, errors: int = 0) -> None:
        super().__init__()
        self.drops, self.errors, self.calls = drops, errors, 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        if self.drops:
            self.drops -= 1
            raise httpx.ConnectError("connection refused", request=request)
        if self.errors:
            self.errors -= 1
            return httpx.Response(503, json={"code": "store_unavailable", "message": "x"})
        return super().handle_request(request)


def test_connection_errors_and_503s_are_retried_with_growing_delays(broker_server):
    org, credential = broker_server.add_org()
    delays: list[float] = []
    network = FlakyNetwork(drops=2, errors=2)
    client = BrokerClient(
        broker_server.url, credential, transport=network, backoff=0.1, sleep=delays.append
    )
    with client:
        assert client.whoami().name == org
    assert network.calls == 5
    assert len(delays) == 4
    assert all(later > earlier for earlier, later in zip(delays, delays[1:], strict=False))


def test_gives_up_after_the_last_retry_with_one_clear_error(broker_server):
    _, credential = broker_server.add_org()
    network = FlakyNetwork(drops=100)
    client = BrokerClient(
        broker_server.url, credential, transport=network, retries=3, sleep=lambda _: None
    )
    with client, pytest.raises(BrokerCallError) as caught:
        client.whoami()
    assert network.calls == 4
    assert caught.value.code == "unreachable"
    assert credential not in str(caught.value)


def test_client_errors_are_not_retried(broker_server):
    network = FlakyNetwork()
    client = BrokerClient(broker_server.url, "tsk_unknown", transport=network, sleep=lambda _: None)
    with client, pytest.raises(BrokerCallError) as caught:
        client.whoami()
    assert network.calls == 1
    assert (caught.value.status, caught.value.code) == (401, "unauthorised")
