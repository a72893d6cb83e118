"""The local index: reference → local record id, kept only on the organisation's disk.

A token batch carries opaque references, never local ids. To turn what the broker sends
back for direct care (keyed by reference) into the organisation's own patients, the SDK
keeps this index, one SQLite file per dataset::

    ORGDIR/local-index/            mode 0700
        DATASET.sqlite             mode 0600, table refs(ref BLOB PRIMARY KEY,
                                   local_id TEXT, batch_id TEXT)

It is not encrypted: it holds local ids (e.g. hospital numbers), which are already in the
organisation's own systems, and no name, NHS number or date of birth. Its protection is
the file mode and the organisation's disk; it must never be uploaded, and nothing in the
SDK ever reads it except :meth:`LocalIndex.lookup`.
"""

from __future__ import annotations

import os
import re
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from client_sdk.errors import InputError, OrgStoreError
from keys.derive import RecordRef

__all__ = ["INDEX_DIRNAME", "LocalIndex"]

INDEX_DIRNAME = "local-index"
_DATASET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_LOOKUP_BATCH = 500


class LocalIndex:
    """Reference → local id for one dataset of one organisation.

    Use as a context manager, or call :meth:`close`.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = sqlite3.connect(path)
        # References are random, so inserts land all over the table: a bounded page cache
        # of 64 MiB keeps a million-record batch from re-reading pages.
        self._db.execute("PRAGMA cache_size = -65536")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS refs ("
            "ref BLOB PRIMARY KEY, local_id TEXT NOT NULL, batch_id TEXT NOT NULL"
            ") WITHOUT ROWID"
        )
        self._db.commit()

    @classmethod
    def open(cls, orgdir: Path, dataset: str) -> LocalIndex:
        """Open (creating if needed) the index of ``dataset`` inside ``orgdir``.

        Raises:
            InputError: the dataset name cannot name a file.
            OrgStoreError: the organisation directory does not exist.
        """
        if not _DATASET.match(dataset):
            raise InputError("dataset name must be letters, digits, '.', '_' or '-' (at most 128)")
        if not orgdir.is_dir():
            raise OrgStoreError(f"{orgdir}: no such organisation directory")
        directory = orgdir / INDEX_DIRNAME
        directory.mkdir(mode=0o700, exist_ok=True)
        os.chmod(directory, 0o700)
        path = directory / f"{dataset}.sqlite"
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
        os.close(fd)
        os.chmod(path, 0o600)
        return cls(path)

    def add(self, refs: Sequence[RecordRef], local_ids: Sequence[str], *, batch_id: str) -> None:
        """Record ``refs[i] → local_ids[i]`` (a reference seen again is overwritten)."""
        if len(refs) != len(local_ids):
            raise ValueError("refs and local_ids differ in length")
        self._db.executemany(
            "INSERT OR REPLACE INTO refs (ref, local_id, batch_id) VALUES (?, ?, ?)",
            # in key order, so neighbouring inserts share B-tree pages
            sorted((bytes(r), i, batch_id) for r, i in zip(refs, local_ids, strict=True)),
        )

    def commit(self) -> None:
        """Make what was added durable."""
        self._db.commit()

    def lookup(self, refs: Iterable[RecordRef]) -> dict[RecordRef, str]:
        """Local ids of the references this organisation issued; unknown ones are left out."""
        wanted = [bytes(r) for r in refs]
        found: dict[RecordRef, str] = {}
        for start in range(0, len(wanted), _LOOKUP_BATCH):
            part = wanted[start : start + _LOOKUP_BATCH]
            marks = ",".join("?" * len(part))
            rows = self._db.execute(
                f"SELECT ref, local_id FROM refs WHERE ref IN ({marks})",
                part,
            )
            for ref, local_id in rows:
                found[RecordRef(bytes(ref))] = str(local_id)
        return found

    def __len__(self) -> int:
        (count,) = self._db.execute("SELECT count(*) FROM refs").fetchone()
        return int(count)

    def close(self) -> None:
        """Commit and close."""
        self._db.commit()
        self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self._db.rollback()
        self.close()
