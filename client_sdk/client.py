"""``BrokerClient``: the SDK's HTTP client for the broker.

Uploads are chunked (the batch file's chunks, already zlib-compressed, sent as raw
bytes), idempotent (a chunk is named by its SHA-256; sent twice, stored once), resumable
(the broker says which chunks it holds, only the rest are sent) and atomic per batch
(linkage sees a batch only once it is committed whole). Connection errors, 429 and 5xx
answers are retried with exponential backoff.

This module never sees an identifier: it imports no reader, normaliser or tokeniser
(an import-linter contract holds it to that), only batch files and wire models.
"""

from __future__ import annotations

import base64
import ipaddress
import random
import re
import ssl
import time
from collections.abc import Callable
from concurrent import futures
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx
from pydantic import BaseModel, SecretStr, TypeAdapter, ValidationError

from client_sdk.errors import BrokerCallError, InputError
from keys.batch import BatchManifest, BatchReader
from keys.wire import (
    BatchMode,
    BatchOpen,
    BatchState,
    BatchStatus,
    ChunkReceipt,
    DatasetDeclaration,
    DatasetInfoOut,
    ErrorBody,
    IdentityOut,
    KeyBlob,
    KeyBlobInfo,
    PublicKeyRegistration,
    ReplacePreview,
)

__all__ = ["BrokerClient", "UploadProgress"]

_M = TypeVar("_M", bound=BaseModel)
_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
_FINAL_STATES = frozenset({BatchState.LINKED, BatchState.FAILED})
_HOST = re.compile(r"[A-Za-z0-9.:-]+")


def _checked_url(base_url: str) -> str:
    """The broker URL, refused unless it is ``http(s)://HOST[:PORT][/PATH]``.

    Raises:
        InputError: no scheme, another scheme, no host or a malformed one (the URL itself
            is not repeated: it may carry a user name).
    """
    hint = "the broker URL must look like https://broker.example.nhs.uk[:PORT]"
    try:
        url = httpx.URL(base_url.strip())
    except httpx.InvalidURL:
        raise InputError(f"{hint} (it does not parse)") from None
    if url.scheme not in ("http", "https"):
        raise InputError(f"{hint}: it must start with http:// or https://")
    if not url.host or not _HOST.fullmatch(url.host):
        raise InputError(f"{hint}: it names no valid host")
    return str(url).rstrip("/")


_CREDENTIAL = re.compile(r"[A-Za-z0-9._~+/-]+=*")
"""What a bearer credential may hold (RFC 6750's b64token; the broker's are URL-safe)."""


def _bearer(credential: str) -> str:
    """The ``Authorization`` value for ``credential``, without its surrounding whitespace.

    A credential copied from a file saved on Windows or read with ``$(cat file)`` often
    ends in a space, CR or newline; those are dropped. Anything else a credential never
    holds is refused here in one line that says what is wrong, never the credential.

    Raises:
        BrokerCallError: the credential is empty or holds such a character.
    """
    value = credential.strip()
    if _CREDENTIAL.fullmatch(value):
        return f"Bearer {value}"
    if not value:
        problem = "it is empty (or only whitespace)"
    elif not value.isascii():
        problem = "it holds a non-ASCII character (a typographic quote or dash?)"
    elif any(ch.isspace() or not ch.isprintable() for ch in value):
        problem = "it holds a space or control character inside it"
    else:
        problem = "it holds a character no credential has (letters, digits, - . _ ~ + / =)"
    raise BrokerCallError(
        f"the broker credential (TESSERA_SDK_TOKEN) is malformed: {problem}; "
        "copy it again from where the broker operator gave it",
        code="bad_credential",
    )


@dataclass(frozen=True, slots=True)
class UploadProgress:
    """One step of an upload, for a progress display.

    Attributes:
        phase: ``"upload"`` (chunks sent) or ``"link"`` (chunks linked by the broker).
        done: chunks done in this phase.
        total: chunks in the batch.
        records: records sent so far (upload phase).
    """

    phase: str
    done: int
    total: int
    records: int = 0


class BrokerClient:
    """A session with the broker under one credential.

    Args:
        base_url: the broker's URL, e.g. ``https://broker.example.nhs.uk``.
        token: the bearer credential (from ``TESSERA_SDK_TOKEN``, never argv).
        timeout: seconds per request.
        retries: attempts after the first, on connection errors, 429 and 5xx.
        backoff: first retry delay in seconds; doubles each time, with jitter.
        transport: an httpx transport (tests).
        sleep: the sleep function (tests).
        ca_bundle: PEM file of the CAs that may sign the broker's certificate (default:
            the certifi bundle httpx ships); ``TESSERA_SDK_CA_BUNDLE`` on the command line.
        client_cert: ``(certificate, key)`` PEM files to present, for a broker that asks
            for mutual TLS.
        insecure_http: allow a plain ``http://`` URL to a host other than loopback, which
            sends the credential in clear; refused otherwise before any connection.

    Raises:
        BrokerCallError: a plain ``http://`` URL to a remote host without
            ``insecure_http``, or a CA bundle or client certificate that cannot be read.
    """

    def __init__(
        self,
        base_url: str,
        token: SecretStr | str,
        *,
        timeout: float = 60.0,
        retries: int = 5,
        backoff: float = 0.5,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        ca_bundle: Path | None = None,
        client_cert: tuple[Path, Path] | None = None,
        insecure_http: bool = False,
    ) -> None:
        base_url = _checked_url(base_url)  # a malformed URL first, in its own words
        _refuse_clear_text(base_url, insecure_http=insecure_http)
        verify = _tls_context(ca_bundle, client_cert)
        secret = token.get_secret_value() if isinstance(token, SecretStr) else token
        self._http = httpx.Client(
            base_url=base_url,
            headers={"Authorization": _bearer(secret), "User-Agent": "tessera-sdk"},
            timeout=timeout,
            transport=transport,
            verify=verify,
        )
        self._retries = retries
        self._backoff = backoff
        self._sleep = sleep
        # A broker that asks for a client certificate closes the TLS connection after the
        # handshake (TLS 1.3), which reaches us as a bare disconnect: say what may be missing.
        self._hint = (
            "; if the broker asks for a client certificate (mutual TLS), set "
            "TESSERA_SDK_TLS_CLIENT_CERT and TESSERA_SDK_TLS_CLIENT_KEY"
            if client_cert is None and base_url.lower().startswith("https://")
            else ""
        )

    # Plumbing ----------------------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        attempt = 0
        while True:
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                untrusted = _certificate_problem(exc)
                if untrusted is not None:
                    raise BrokerCallError(
                        f"the broker's TLS certificate is not trusted ({untrusted}); set "
                        "TESSERA_SDK_CA_BUNDLE to the CA that signed it",
                        code="untrusted_certificate",
                    ) from None
                if attempt >= self._retries:
                    hint = self._hint if isinstance(exc, httpx.RemoteProtocolError) else ""
                    raise BrokerCallError(
                        f"cannot reach the broker ({type(exc).__name__}){hint}"
                    ) from None
            else:
                if response.status_code < 400:
                    return response
                if response.status_code not in _RETRY_STATUS or attempt >= self._retries:
                    raise _call_error(response)
            delay = self._backoff * (2**attempt) * (0.5 + random.random() / 2)
            self._sleep(delay)
            attempt += 1

    def _get(self, path: str, model: type[_M]) -> _M:
        return _parse(self._request("GET", path), model)

    def _post(self, path: str, body: BaseModel, model: type[_M]) -> _M:
        content = body.model_dump_json().encode()
        headers = {"Content-Type": "application/json"}
        return _parse(self._request("POST", path, content=content, headers=headers), model)

    # Identity and keys -------------------------------------------------------------------

    def whoami(self) -> IdentityOut:
        """The identity of this client's credential."""
        return self._get("/v1/whoami", IdentityOut)

    def register_public_key(self, registration: PublicKeyRegistration) -> None:
        """Register the organisation's identity public key with the broker."""
        self._request(
            "PUT",
            "/v1/orgs/me/public-key",
            content=registration.model_dump_json().encode(),
            headers={"Content-Type": "application/json"},
        )

    def key_blobs(self) -> list[KeyBlobInfo]:
        """The wrapped domain-key blobs the broker holds for this organisation."""
        response = self._request("GET", "/v1/orgs/me/key-blobs")
        return _parse_list(response, KeyBlobInfo)

    def key_blob(self, domain: str, key_version: str) -> bytes:
        """One wrapped blob's bytes (still wrapped: only the org's own key opens it)."""
        blob = self._get(f"/v1/orgs/me/key-blobs/{domain}/{key_version}", KeyBlob)
        return base64.b64decode(blob.blob)

    # Datasets ----------------------------------------------------------------------------

    def declare_dataset(self, declaration: DatasetDeclaration) -> DatasetInfoOut:
        """Declare a dataset (the same declaration again is accepted as it is)."""
        return self._post("/v1/datasets", declaration, DatasetInfoOut)

    def datasets(self) -> list[DatasetInfoOut]:
        """This organisation's datasets."""
        return _parse_list(self._request("GET", "/v1/datasets"), DatasetInfoOut)

    def dataset(self, name: str) -> DatasetInfoOut:
        """One of this organisation's datasets."""
        return self._get(f"/v1/datasets/{name}", DatasetInfoOut)

    # Upload ------------------------------------------------------------------------------

    def open_batch(
        self, dataset: str, manifest: BatchManifest, mode: BatchMode = BatchMode.APPEND
    ) -> BatchStatus:
        """Open a batch, or re-open it to resume: the status lists the chunks held."""
        body = BatchOpen(manifest=manifest, mode=mode)
        return self._post(f"/v1/datasets/{dataset}/batches", body, BatchStatus)

    def batch_status(self, dataset: str, batch_id: str) -> BatchStatus:
        """Where a batch stands."""
        return self._get(f"/v1/datasets/{dataset}/batches/{batch_id}", BatchStatus)

    def put_chunk(self, dataset: str, batch_id: str, index: int, data: bytes) -> ChunkReceipt:
        """Send one chunk's bytes exactly as in the batch file."""
        response = self._request(
            "PUT",
            f"/v1/datasets/{dataset}/batches/{batch_id}/chunks/{index}",
            content=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        return _parse(response, ChunkReceipt)

    def replace_preview(self, dataset: str, batch_id: str) -> ReplacePreview:
        """What committing a ``replace`` batch (all chunks sent) would remove."""
        path = f"/v1/datasets/{dataset}/batches/{batch_id}/replace-preview"
        return self._get(path, ReplacePreview)

    def commit(self, dataset: str, batch_id: str, *, confirm_replace: bool = False) -> BatchStatus:
        """Commit a complete batch (safe to repeat).

        Args:
            confirm_replace: confirm a replace that removes more than the broker allows
                unconfirmed.
        """
        params = {"confirm_replace": "true"} if confirm_replace else None
        response = self._request(
            "POST", f"/v1/datasets/{dataset}/batches/{batch_id}/commit", params=params
        )
        return _parse(response, BatchStatus)

    def upload(
        self,
        batch: Path | BatchReader,
        *,
        dataset: str | None = None,
        mode: BatchMode = BatchMode.APPEND,
        wait: bool = True,
        wait_timeout: float = 3600.0,
        poll: float = 0.2,
        on_progress: Callable[[UploadProgress], None] | None = None,
        concurrency: int = 2,
        confirm_replace: bool = False,
        on_replace_preview: Callable[[ReplacePreview], None] | None = None,
    ) -> BatchStatus:
        """Upload a batch file, resuming where an earlier attempt stopped.

        Args:
            batch: the batch file (or an open reader).
            dataset: the dataset to upload to (default: the manifest's).
            mode: ``append``, ``replace`` (a new full snapshot) or ``retract``.
            wait: wait until the broker has linked the batch.
            wait_timeout: seconds to wait for linkage.
            poll: seconds between status polls while waiting.
            on_progress: called after each chunk and each linkage poll.
            concurrency: chunks in flight at once (at most twice this many are read
                ahead of the network).
            confirm_replace: commit a replace even when it removes more than the
                broker's share (see :class:`~keys.wire.ReplacePreview`).
            on_replace_preview: called with what a replace will remove, before it is
                committed.

        Returns:
            The batch's final status (``linked``, ``failed``) or, without ``wait``, as
            committed.

        Raises:
            BrokerCallError: the broker refused, or could not be reached after retries;
                code ``replace_not_confirmed`` when a replace needs ``confirm_replace``
                (nothing is committed; the chunks stay held for the next attempt).
        """
        reader = batch if isinstance(batch, BatchReader) else BatchReader(batch)
        manifest = reader.manifest
        name = dataset or manifest.dataset
        status = self.open_batch(name, manifest, mode)
        total = status.chunk_count
        if status.state is BatchState.RECEIVING:
            held = set(status.received)
            progress = UploadProgress("upload", len(held), total, 0)
            _report(on_progress, progress)
            with ThreadPoolExecutor(max_workers=concurrency) as pool:
                inflight: set[Future[ChunkReceipt]] = set()

                def settle(futures: set[Future[ChunkReceipt]]) -> None:
                    nonlocal progress
                    for future in futures:
                        receipt = future.result()
                        progress = UploadProgress(
                            "upload", progress.done + 1, total, progress.records + receipt.records
                        )
                        _report(on_progress, progress)

                for index, data in enumerate(reader.raw_chunks()):
                    if index in held:
                        continue
                    inflight.add(pool.submit(self.put_chunk, name, manifest.batch_id, index, data))
                    if len(inflight) >= 2 * concurrency:
                        finished, inflight = futures.wait(
                            inflight, return_when=futures.FIRST_COMPLETED
                        )
                        settle(finished)
                for future in futures.as_completed(inflight):
                    settle({future})
            if mode is BatchMode.REPLACE:
                preview = self.replace_preview(name, manifest.batch_id)
                if on_replace_preview is not None:
                    on_replace_preview(preview)
                if preview.needs_confirmation and not confirm_replace:
                    raise BrokerCallError(
                        f"this replace would remove {preview.removed:,} of the "
                        f"{preview.held:,} records held ({preview.removed_share:.0%}), more "
                        f"than {preview.confirm_above:.0%}: nothing was changed; if the batch "
                        "is the whole dataset now, run the upload again with --confirm-replace",
                        code="replace_not_confirmed",
                    )
            status = self.commit(name, manifest.batch_id, confirm_replace=confirm_replace)
        else:
            _report(on_progress, UploadProgress("upload", total, total, manifest.record_count))
        if not wait:
            return status
        return self.wait_linked(
            name, manifest.batch_id, timeout=wait_timeout, poll=poll, on_progress=on_progress
        )

    def wait_linked(
        self,
        dataset: str,
        batch_id: str,
        *,
        timeout: float = 3600.0,
        poll: float = 0.2,
        on_progress: Callable[[UploadProgress], None] | None = None,
    ) -> BatchStatus:
        """Poll a committed batch until it is ``linked`` or ``failed``.

        Raises:
            BrokerCallError: still not linked after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            status = self.batch_status(dataset, batch_id)
            _report(on_progress, UploadProgress("link", status.chunks_linked, status.chunk_count))
            if status.state in _FINAL_STATES:
                return status
            if time.monotonic() > deadline:
                raise BrokerCallError(
                    f"the broker has not linked batch {batch_id} yet; check again later",
                    code="timeout",
                )
            self._sleep(poll)

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _refuse_clear_text(base_url: str, *, insecure_http: bool) -> None:
    """Refuse to send a credential over plain HTTP to anything but this machine.

    Decided from the URL alone, before any connection: a name other than ``localhost``
    is not resolved (it could resolve anywhere), so only loopback addresses and
    ``localhost`` pass.
    """
    try:
        url = httpx.URL(base_url)
    except httpx.InvalidURL:
        raise BrokerCallError(f"not a broker URL: {base_url!r}", code="bad_url") from None
    if url.scheme == "https":
        return
    if url.scheme != "http" or not url.host:
        raise BrokerCallError(
            f"the broker URL must start with https:// (got {url.scheme or 'no'} scheme)",
            code="bad_url",
        )
    if insecure_http or _is_loopback(url.host):
        return
    raise BrokerCallError(
        f"refusing to send a credential over plain http:// to {url.host}; use https:// "
        "(or --insecure-http / TESSERA_SDK_INSECURE_HTTP=1 on a network you trust)",
        code="insecure_transport",
    )


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _tls_context(ca_bundle: Path | None, client_cert: tuple[Path, Path] | None) -> ssl.SSLContext:
    """Certificate verification always on: the given CA bundle, else httpx's default."""
    try:
        if ca_bundle is None:
            context = httpx.create_ssl_context()
        else:
            context = ssl.create_default_context(cafile=str(ca_bundle))
    except (OSError, ssl.SSLError) as exc:
        raise BrokerCallError(
            f"cannot read the CA bundle {ca_bundle} ({_ssl_reason(exc)})", code="bad_tls_config"
        ) from None
    if client_cert is not None:
        certificate, key = client_cert
        try:
            context.load_cert_chain(str(certificate), str(key))
        except (OSError, ssl.SSLError) as exc:
            raise BrokerCallError(
                f"cannot read the client certificate {certificate} ({_ssl_reason(exc)})",
                code="bad_tls_config",
            ) from None
    return context


def _ssl_reason(exc: BaseException) -> str:
    return str(getattr(exc, "reason", None) or getattr(exc, "strerror", None) or type(exc).__name__)


def _certificate_problem(exc: BaseException) -> str | None:
    """The reason a TLS handshake refused the broker's certificate, if that is the error."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return str(seen.verify_message or seen.reason or "verification failed")
        seen = seen.__cause__ or seen.__context__
    return None


def _report(callback: Callable[[UploadProgress], None] | None, event: UploadProgress) -> None:
    if callback is not None:
        callback(event)


def _call_error(response: httpx.Response) -> BrokerCallError:
    try:
        body = ErrorBody.model_validate_json(response.content)
    except ValidationError:
        return BrokerCallError(
            f"the broker answered HTTP {response.status_code}",
            code="http_error",
            status=response.status_code,
        )
    return BrokerCallError(
        f"the broker refused ({body.code}): {body.message}",
        code=body.code,
        status=response.status_code,
    )


def _parse(response: httpx.Response, model: type[_M]) -> _M:
    try:
        return model.model_validate_json(response.content)
    except ValidationError:
        raise BrokerCallError(
            f"unexpected answer from the broker (HTTP {response.status_code})",
            code="bad_response",
            status=response.status_code,
        ) from None


def _parse_list(response: httpx.Response, model: type[_M]) -> list[_M]:
    try:
        return TypeAdapter(list[model]).validate_json(response.content)  # type: ignore[valid-type]
    except ValidationError:
        raise BrokerCallError(
            f"unexpected answer from the broker (HTTP {response.status_code})",
            code="bad_response",
            status=response.status_code,
        ) from None
