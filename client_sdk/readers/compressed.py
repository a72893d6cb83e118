"""Open an extract that may be gzip-compressed, told by its first bytes, not its name.

Exports are often compressed on their way between systems (``patients.csv.gz``, a Bulk Data
``Patient.ndjson.gz``), and a renamed or extension-less file is common, so the gzip magic
number (``1f 8b``) decides, whatever the name. Several gzip members one after another (what
``cat a.gz b.gz`` or a parallel compressor writes) read as one stream. A compressed file
that is cut short or corrupted is a one-line :class:`InputError` at the point it breaks,
never a traceback. This module is plain Python, outside the compiled hot path: the
decompression itself runs in zlib's C code either way.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import BinaryIO, TextIO

from client_sdk.errors import InputError

__all__ = ["GZIP_MAGIC", "bytes_read", "is_gzip", "open_binary"]

GZIP_MAGIC = b"\x1f\x8b"

_BROKEN = (EOFError, zlib.error, gzip.BadGzipFile)


def is_gzip(path: Path) -> bool:
    """Whether ``path`` starts with the gzip magic number.

    Raises:
        InputError: the file cannot be read.
    """
    try:
        with path.open("rb") as raw:
            return raw.read(len(GZIP_MAGIC)) == GZIP_MAGIC
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror}") from None


class _Gzip(gzip.GzipFile):
    """A gzip stream whose damage is an :class:`InputError` naming the file."""

    def __init__(self, path: Path) -> None:
        super().__init__(filename=path, mode="rb")
        self._path = path

    def _broken(self) -> InputError:
        return InputError(
            f"{self._path}: the gzip data is cut short or corrupted after "
            f"{self.tell():,} bytes of the extract: nothing after that can be read"
        )

    def read(self, size: int | None = -1) -> bytes:
        try:
            return super().read(size)
        except _BROKEN:
            raise self._broken() from None

    def read1(self, size: int = -1) -> bytes:
        try:
            return super().read1(size)
        except _BROKEN:
            raise self._broken() from None

    def peek(self, n: int) -> bytes:
        try:
            return super().peek(n)
        except _BROKEN:
            raise self._broken() from None


def open_binary(path: Path) -> BinaryIO:
    """``path`` opened for reading bytes, decompressed if it is gzip.

    Raises:
        InputError: the file cannot be opened.
    """
    try:
        if is_gzip(path):
            return _Gzip(path)  # type: ignore[return-value]  # a GzipFile reads as BinaryIO
        return path.open("rb")
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror}") from None


def bytes_read(text: TextIO) -> int:
    """How far into the file on disk ``text`` has read: the compressed offset for gzip.

    Progress is shown against the file's size on disk, so a compressed file's progress
    counts compressed bytes.
    """
    buffer = text.buffer
    if isinstance(buffer, gzip.GzipFile) and buffer.fileobj is not None:
        return int(buffer.fileobj.tell())
    return int(buffer.tell())
