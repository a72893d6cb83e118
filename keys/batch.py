"""Token batch files: a sequence of token chunks (:mod:`keys.chunk`) with a manifest.

``tessera-sdk tokenise`` writes them; the upload client sends each chunk's bytes as they
are in the file, so a chunk's SHA-256 identifies it end to end. Batch file::

    b"TESSERA-BATCH\\x01\\n"
    (u32 len | chunk bytes)*                    chunks, in order
    manifest JSON                               :class:`BatchManifest`
    u32 manifest length | b"TSBEND01"

The manifest is written last, so the writer streams and the reader seeks to the end.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, Self

from pydantic import BaseModel, ConfigDict, Field

from keys.chunk import BatchFormatError, TokenChunk, chunk_digest, decode_chunk, encode_chunk

__all__ = [
    "BATCH_FORMAT_VERSION",
    "BatchManifest",
    "BatchReader",
    "BatchWriter",
]

BATCH_FORMAT_VERSION = 1
_BATCH_MAGIC = b"TESSERA-BATCH\x01\n"
_BATCH_END = b"TSBEND01"
_U32 = struct.Struct(">I")


class BatchManifest(BaseModel):
    """What a batch file says about itself; travels with the upload.

    ``org`` is the organisation the SDK made the batch for (its organisation directory's
    name): the broker refuses the batch from any other organisation's credential. A batch
    written before the field existed has none and is judged by its dataset alone.

    ``opt_out_checked`` is the day the organisation last checked the National Data Opt-out
    for these records ("Check for National Data Opt-outs"), when it applied a permitted
    file; the broker refuses research releases from a batch checked too long ago. Whether
    each record may be used is its chunk's flag (:data:`keys.chunk.RESEARCH_RESTRICTED`):
    the manifest holds no count, list or reason.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    format_version: int = BATCH_FORMAT_VERSION
    batch_id: str
    dataset: str
    org: str | None = None
    domain: str
    key_version: str
    spec_hash: str
    match_keys: list[str]
    payload_columns: list[str]
    record_count: int
    chunk_digests: list[str]
    created_at: str
    quality: dict[str, Any] = Field(default_factory=dict)
    opt_out_checked: date | None = None


class BatchWriter:
    """Streams chunks to a batch file; the manifest is added by :meth:`finish`.

    Writes to ``PATH.partial`` and renames on finish, so a batch file that exists is whole.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._tmp = path.with_name(path.name + ".partial")
        self._fh: BinaryIO = self._tmp.open("wb")
        self._fh.write(_BATCH_MAGIC)
        self._digests: list[str] = []

    def write_chunk(self, chunk: TokenChunk) -> None:
        """Encode and append one chunk."""
        self.write_encoded(encode_chunk(chunk))

    def write_encoded(self, data: bytes) -> None:
        """Append one chunk already encoded by :func:`encode_chunk` (e.g. in a worker)."""
        self._fh.write(_U32.pack(len(data)))
        self._fh.write(data)
        self._digests.append(chunk_digest(data))

    @property
    def chunk_digests(self) -> list[str]:
        """Digests of the chunks written so far."""
        return list(self._digests)

    def finish(self, manifest: BatchManifest) -> None:
        """Write the manifest and move the file into place."""
        if manifest.chunk_digests != self._digests:
            raise BatchFormatError("manifest does not list the chunks written")
        body = manifest.model_dump_json().encode()
        self._fh.write(body + _U32.pack(len(body)) + _BATCH_END)
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        os.replace(self._tmp, self._path)

    def abort(self) -> None:
        """Close and remove the partial file."""
        self._fh.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self._fh.closed:
            self.abort()


class BatchReader:
    """Reads a batch file: the manifest at once, chunks lazily."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            with path.open("rb") as fh:
                if fh.read(len(_BATCH_MAGIC)) != _BATCH_MAGIC:
                    raise BatchFormatError(f"{path}: not a Tessera batch file")
                fh.seek(-(4 + len(_BATCH_END)), os.SEEK_END)
                tail = fh.read()
                if tail[4:] != _BATCH_END:
                    raise BatchFormatError(f"{path}: truncated batch file")
                (length,) = _U32.unpack(tail[:4])
                fh.seek(-(4 + len(_BATCH_END) + length), os.SEEK_END)
                self._chunks_end = fh.tell()
                self.manifest = BatchManifest.model_validate_json(fh.read(length))
        except OSError as exc:
            raise BatchFormatError(f"{path}: cannot read batch file") from exc
        except ValueError as exc:
            if isinstance(exc, BatchFormatError):
                raise
            raise BatchFormatError(f"{path}: corrupt batch manifest") from exc

    def raw_chunks(self) -> Iterator[bytes]:
        """Each chunk's bytes, as stored and as uploaded."""
        with self.path.open("rb") as fh:
            fh.seek(len(_BATCH_MAGIC))
            while fh.tell() < self._chunks_end:
                (length,) = _U32.unpack(fh.read(4))
                data = fh.read(length)
                if len(data) != length:
                    raise BatchFormatError(f"{self.path}: truncated chunk")
                yield data

    def chunks(self) -> Iterator[TokenChunk]:
        """Each chunk, decoded."""
        for data in self.raw_chunks():
            yield decode_chunk(data)
