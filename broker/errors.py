"""Errors of the broker: the ``BrokerError`` branch of the tree in keys/errors.py.

Each class carries an HTTP ``status_code`` and a stable machine ``code``; one handler in
broker/app.py turns them into :class:`keys.wire.ErrorBody`. ::

    BrokerError                               500 internal_error
    ├── ConfigurationError                    500 bad_configuration (exit 22)
    ├── AuditTamperedError                    500 audit_tampered (exit 28): names the first
    │                                             bad position of the audit log
    ├── UnauthorisedError                     401 unauthorised
    ├── NotFoundOrForbiddenError              403 not_found_or_forbidden: one message for
    │                                             "does not exist" and "not yours"
    ├── RoleError                             403 wrong_role
    ├── RateLimitedError                      429 rate_limited: too many credential
    │                                             failures; ``retry_after`` seconds
    ├── BadRequestError (ValueError)          400 bad_request
    │   ├── ValidationFailedError             422 validation_failed
    │   ├── ChunkError                        422 bad_chunk
    │   ├── WeakMatchKeyError                 422 weak_match_key: a batch's own token
    │   │                                         counts show a key that cannot tell
    │   │                                         people apart (broker/upload_checks.py)
    │   ├── PayloadTooLargeError              413 too_large
    │   ├── RequestTimeoutError               408 request_timeout: the body came too slowly
    │   └── UnsupportedMediaTypeError         415 unsupported_media_type
    ├── ConflictError                         409 conflict
    │   ├── QuotaExceededError                409 quota_exceeded: an organisation's limit
    │   │                                         on open batches, datasets or domains
    │   ├── DatasetMismatchError              409 dataset_mismatch: spec hash, domain, key
    │   │   │                                     version or match keys differ
    │   │   └── BatchOrgMismatchError         409 batch_org_mismatch: the batch was made
    │   │                                         by another organisation
    │   ├── ReplaceNotConfirmedError          409 replace_not_confirmed: a replace would
    │   │                                         remove more than the share allowed
    │   ├── BatchStateError                   409 batch_state
    │   └── IncompleteBatchError              409 batch_incomplete
    └── RedisUnavailableError                 503 store_unavailable (broker/store/embedded.py)
"""

from __future__ import annotations

from keys.errors import BrokerError

__all__ = [
    "NOT_FOUND_OR_FORBIDDEN_MESSAGE",
    "AuditTamperedError",
    "BadRequestError",
    "BatchOrgMismatchError",
    "BatchStateError",
    "ChunkError",
    "ConfigurationError",
    "ConflictError",
    "DatasetMismatchError",
    "IncompleteBatchError",
    "NotFoundOrForbiddenError",
    "PayloadTooLargeError",
    "QuotaExceededError",
    "RateLimitedError",
    "ReplaceNotConfirmedError",
    "RequestTimeoutError",
    "RoleError",
    "UnauthorisedError",
    "UnsupportedMediaTypeError",
    "ValidationFailedError",
    "WeakMatchKeyError",
]

NOT_FOUND_OR_FORBIDDEN_MESSAGE = "no such resource, or not yours"


class ConfigurationError(BrokerError):
    """Settings or secrets the broker refuses to start with."""

    exit_code = 22
    code = "bad_configuration"


class AuditTamperedError(BrokerError):
    """The audit log fails verification; ``position`` is the first bad one."""

    exit_code = 28
    code = "audit_tampered"

    def __init__(self, position: int, message: str) -> None:
        super().__init__(f"audit log fails verification at position {position}: {message}")
        self.position = position


class UnauthorisedError(BrokerError):
    """No credential, an unknown one, or a revoked one (never says which)."""

    exit_code = 23
    status_code = 401
    code = "unauthorised"

    def __init__(self, message: str = "missing, unknown or revoked credential") -> None:
        super().__init__(message)


class NotFoundOrForbiddenError(BrokerError, LookupError):
    """The resource does not exist, or belongs to someone else: one answer for both."""

    exit_code = 24
    status_code = 403
    code = "not_found_or_forbidden"

    def __init__(self, message: str = NOT_FOUND_OR_FORBIDDEN_MESSAGE) -> None:
        super().__init__(message)


class RoleError(BrokerError):
    """The credential's role may not call this endpoint."""

    exit_code = 24
    status_code = 403
    code = "wrong_role"


class BadRequestError(BrokerError, ValueError):
    """A request the broker cannot act on."""

    exit_code = 25
    status_code = 400
    code = "bad_request"


class ValidationFailedError(BadRequestError):
    """A request body or parameter that does not validate."""

    status_code = 422
    code = "validation_failed"


class ChunkError(BadRequestError):
    """A token chunk that is corrupt, or whose digest or columns disagree with its batch."""

    status_code = 422
    code = "bad_chunk"


class PayloadTooLargeError(BadRequestError):
    """A request body over the broker's size limit."""

    status_code = 413
    code = "too_large"


class RequestTimeoutError(BadRequestError):
    """A request body that did not arrive whole within the broker's read timeout."""

    status_code = 408
    code = "request_timeout"


class UnsupportedMediaTypeError(BadRequestError):
    """A body that is not JSON (or, for a chunk, not ``application/octet-stream``)."""

    status_code = 415
    code = "unsupported_media_type"


class RateLimitedError(BrokerError):
    """Too many credential failures from this address, or for this credential."""

    exit_code = 25
    status_code = 429
    code = "rate_limited"

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            f"too many failed credentials; try again in {retry_after} s (docs/api.md, Limits)"
        )
        self.retry_after = retry_after


class ConflictError(BrokerError):
    """The request conflicts with what the broker holds."""

    exit_code = 26
    status_code = 409
    code = "conflict"


class DatasetMismatchError(ConflictError):
    """A batch tokenised under another domain, key version, spec or match keys."""

    code = "dataset_mismatch"


class BatchStateError(ConflictError):
    """The batch is not in a state that allows this call (e.g. a chunk after commit)."""

    code = "batch_state"


class IncompleteBatchError(ConflictError):
    """Commit of a batch that still lacks chunks."""

    code = "batch_incomplete"


class WeakMatchKeyError(BadRequestError):
    """A match key of the batch has too few distinct tokens to tell people apart."""

    status_code = 422
    code = "weak_match_key"


class BatchOrgMismatchError(DatasetMismatchError):
    """The batch's manifest names another organisation than the caller."""

    code = "batch_org_mismatch"


class ReplaceNotConfirmedError(ConflictError):
    """A replace would remove more records than allowed without confirmation."""

    code = "replace_not_confirmed"


class QuotaExceededError(ConflictError):
    """An organisation is at one of its documented limits (docs/api.md, Limits)."""

    code = "quota_exceeded"
