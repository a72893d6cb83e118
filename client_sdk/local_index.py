"""The local index: reference → local record id, kept only on the organisation's disk.

A token batch carries opaque references, never local ids. To turn what the broker sends
back for direct care (keyed by reference) into the organisation's own patients, the SDK
keeps this index, one file per dataset::

    ORGDIR/local-index/            mode 0700
        DATASET.arrow              mode 0600, an Arrow IPC file sorted by reference:
                                   ref (16 bytes), local_id, batch_id
        DATASET.lock               held while a tokenise merges its references in

It is not encrypted: it holds local ids (e.g. hospital numbers), which are already in the
organisation's own systems, and no name, NHS number or date of birth. Its protection is
the file mode and the organisation's disk; it must never be uploaded, and nothing in the
SDK ever reads it except :meth:`LocalIndex.lookup`.

Why a sorted file rather than a database: a tokenise writes one reference per record, and
references are random, so inserting them one by one into a B-tree (SQLite, as before) cost
the writing process about 5 µs a record, the one serial step that more workers could not
help. Now :meth:`LocalIndex.add` only appends each chunk's columns in memory (about 0.1 µs
a record, 30 bytes each), and :meth:`LocalIndex.commit` merges them with the file once, in
Arrow's C kernels (under 1 µs a record): docs/performance-history.md (fifth pass) has the
figures.

Crash safety: the file is only ever replaced whole. ``commit`` writes the merged index to a
private temporary file beside it, flushes it to disk and renames it over the old one, so a
tokenise that dies at any point leaves the previous index exactly as it was (a stray
``*.partial`` at most, removed by the next commit), and lookups never see half an index.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from filelock import FileLock

from client_sdk.errors import InputError, OrgStoreError
from keys.derive import RecordRef

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["INDEX_DIRNAME", "INDEX_SUFFIX", "LocalIndex"]

INDEX_DIRNAME = "local-index"
INDEX_SUFFIX = ".arrow"
_DATASET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_REF_BYTES = 16


def _schema() -> pa.Schema:
    import pyarrow as pa

    fields: list[pa.Field[Any]] = [
        pa.field("ref", pa.binary(_REF_BYTES)),
        pa.field("local_id", pa.string()),
        pa.field("batch_id", pa.dictionary(pa.int32(), pa.string())),
    ]
    return pa.schema(fields)


class LocalIndex:
    """Reference → local id for one dataset of one organisation.

    Added references become visible to :meth:`lookup` once :meth:`commit` (or a clean exit
    of the ``with`` block) has merged them in; an exception in the block discards them.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._pending: list[pa.RecordBatch] = []

    @classmethod
    def open(cls, orgdir: Path, dataset: str) -> LocalIndex:
        """Open the index of ``dataset`` inside ``orgdir`` (its directory made if needed).

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
        return cls(directory / f"{dataset}{INDEX_SUFFIX}")

    def add(self, refs: Sequence[RecordRef], local_ids: Sequence[str], *, batch_id: str) -> None:
        """Record ``refs[i] → local_ids[i]`` (a reference seen again is overwritten)."""
        import pyarrow as pa

        if len(refs) != len(local_ids):
            raise ValueError("refs and local_ids differ in length")
        joined = b"".join(refs)
        if len(joined) != _REF_BYTES * len(refs):
            raise ValueError(f"references must be {_REF_BYTES} bytes each")
        count = len(refs)
        ref_array = pa.FixedSizeBinaryArray.from_buffers(
            pa.binary(_REF_BYTES), count, [None, pa.py_buffer(joined)]
        )
        batch_array = pa.DictionaryArray.from_arrays(
            pa.array([0] * count, pa.int32()), pa.array([batch_id], pa.string())
        )
        self._pending.append(
            pa.RecordBatch.from_arrays(
                [ref_array, pa.array(local_ids, pa.string()), batch_array], schema=_schema()
            )
        )

    def commit(self) -> None:
        """Merge what was added into the index file, replacing the file whole."""
        if not self._pending:
            return
        import pyarrow as pa
        import pyarrow.compute as pc

        with FileLock(self.path.with_suffix(".lock")):
            for stale in self.path.parent.glob(f".{self.path.name}.*.partial"):
                stale.unlink(missing_ok=True)
            new = pa.Table.from_batches(self._pending, schema=_schema())
            # last one wins within this batch, as with a second INSERT OR REPLACE
            new = _keep_last(new)
            old = self._read()
            if old is not None:
                stays = pc.invert(pc.is_in(old["ref"], value_set=new["ref"]))
                new = pa.concat_tables([old.filter(stays), new]).unify_dictionaries()
            merged = new.take(pc.sort_indices(new, sort_keys=[("ref", "ascending")]))
            self._replace(merged.combine_chunks())
        self._pending = []

    def lookup(self, refs: Iterable[RecordRef]) -> dict[RecordRef, str]:
        """Local ids of the references this organisation issued; unknown ones are left out."""
        import pyarrow as pa
        import pyarrow.compute as pc

        wanted = [bytes(r) for r in refs if len(r) == _REF_BYTES]
        table = self._read()
        if table is None or not wanted:
            return {}
        value_set = pa.array(wanted, pa.binary(_REF_BYTES))
        hits = table.filter(pc.is_in(table["ref"], value_set=value_set))
        refs_found: list[bytes] = hits["ref"].to_pylist()  # type: ignore[assignment]
        local_ids: list[str] = hits["local_id"].to_pylist()  # type: ignore[assignment]
        # the schema has no nulls: every row holds both
        return {RecordRef(r): i for r, i in zip(refs_found, local_ids, strict=True)}

    def __len__(self) -> int:
        table = self._read()
        return 0 if table is None else table.num_rows

    def close(self) -> None:
        """Commit what was added."""
        self.commit()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self._pending = []
        self.close()

    def _read(self) -> pa.Table | None:
        import pyarrow as pa
        import pyarrow.ipc as ipc

        if not self.path.exists():
            return None
        # read into memory, not memory-mapped: Windows cannot rename over a mapped file
        with pa.OSFile(str(self.path), "rb") as source:
            return ipc.open_file(source).read_all()

    def _replace(self, table: pa.Table) -> None:
        import pyarrow as pa
        import pyarrow.ipc as ipc

        fd, name = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.",
                                    suffix=".partial")  # fmt: skip
        os.close(fd)  # mkstemp made it 0600, which the index keeps
        partial = Path(name)
        try:
            with pa.OSFile(name, "wb") as sink, ipc.new_file(sink, table.schema) as writer:
                writer.write_table(table)
            _fsync(partial)
            os.replace(partial, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                partial.unlink()
            raise
        with contextlib.suppress(OSError):  # the rename's durability; not every OS allows it
            _fsync(self.path.parent)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _keep_last(table: pa.Table) -> pa.Table:
    """``table`` without the earlier rows of a reference that appears more than once."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pc.count_distinct(table["ref"]).as_py() == table.num_rows:
        return table
    positions = table.append_column("_row", pa.array(range(table.num_rows), pa.int64()))
    last = positions.group_by("ref").aggregate([("_row", "max")])["_row_max"]
    return table.take(last)  # in any order: commit sorts by reference
