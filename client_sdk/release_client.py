"""``ReleaseClient``: agreements and releases over HTTP (the upload client's session).

Kept apart from client.py so that the upload client stays small; like it, this module
never sees an identifier: releases hold project pseudonyms, released values and the
organisation's own opaque references, which only its local index maps to local ids.
"""

from __future__ import annotations

from pydantic import BaseModel, TypeAdapter, ValidationError

from client_sdk.client import BrokerClient
from client_sdk.errors import BrokerCallError
from keys.wire_release import (
    AggregateOut,
    AggregateRequest,
    AgreementOut,
    CohortOut,
    CohortRequest,
    LinkedOut,
)
from keys.wire_review import ReviewOut

__all__ = ["ReleaseClient"]

_AGREEMENTS = TypeAdapter(list[AgreementOut])


class _NoBody(BaseModel):
    """An empty JSON object, for calls that carry no body."""


class ReleaseClient(BrokerClient):
    """A :class:`~client_sdk.client.BrokerClient` that also reads agreements and releases."""

    def agreements(self) -> list[AgreementOut]:
        """The agreements this identity contributes to, receives under or is named on."""
        response = self._request("GET", "/v1/agreements")
        try:
            return _AGREEMENTS.validate_json(response.content)
        except ValidationError:
            raise BrokerCallError(
                f"unexpected answer from the broker (HTTP {response.status_code})",
                code="bad_response",
                status=response.status_code,
            ) from None

    def agreement(self, agreement_id: str) -> AgreementOut:
        """One agreement, with its status now."""
        return self._get(f"/v1/agreements/{agreement_id}", AgreementOut)

    def approve(self, agreement_id: str) -> AgreementOut:
        """Approve an agreement as a contributing organisation."""
        return self._post(f"/v1/agreements/{agreement_id}/approve", _NoBody(), AgreementOut)

    def cohort(self, agreement_id: str, request: CohortRequest) -> CohortOut:
        """A pseudonymised cohort (researchers named on a record-level agreement)."""
        return self._post(f"/v1/agreements/{agreement_id}/cohort", request, CohortOut)

    def aggregate(self, agreement_id: str, request: AggregateRequest) -> AggregateOut:
        """Protected counts (researchers named on an aggregate agreement)."""
        return self._post(f"/v1/agreements/{agreement_id}/aggregate", request, AggregateOut)

    def linked(self, agreement_id: str) -> LinkedOut:
        """The direct-care return for this organisation's own references."""
        return self._get(f"/v1/agreements/{agreement_id}/linked", LinkedOut)

    def review(self) -> ReviewOut:
        """Doubts about this organisation's own records (its references only)."""
        return self._get("/v1/review", ReviewOut)
