"""Where the SDK's commands write: never over an input, never silently over an earlier output.

A token batch and a quality report carry payload or quality detail about an organisation's
patients, so they are written readable by their owner only (mode 0600), as releases are.
Before anything is written, :func:`check_output` refuses an output path that is one of the
command's inputs (the same file by device and inode, so a hard link or another spelling of
the path is caught too), and an existing output unless ``--force`` was given.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from client_sdk.errors import OutputError

__all__ = ["PRIVATE_UMASK", "check_output", "private_files", "write_failure", "write_private_text"]

PRIVATE_UMASK = 0o077
"""Files created under :func:`private_files` are readable and writable by their owner only."""


def _files_under(directory: Path) -> Iterator[Path]:
    """Every regular file inside ``directory`` (an organisation directory is small)."""
    for root, _, names in os.walk(directory):
        for name in names:
            yield Path(root, name)


def check_output(
    path: Path,
    *,
    inputs: Iterable[tuple[str, Path | None]],
    directories: Iterable[tuple[str, Path]] = (),
    force: bool = False,
) -> None:
    """Refuse to write ``path`` over an input, or over an existing file without ``force``.

    Args:
        path: the output file.
        inputs: (what it is, path) of each input file the command reads (``"the
            mapping"``); ``None`` is skipped.
        directories: (what its files are, directory) whose every file is an input (``"a
            file of the organisation directory"``: its keystore and local indexes).
        force: allow replacing an existing file that is not an input.

    Raises:
        OutputError: ``path`` is an input, or exists and ``force`` is not set.
    """
    try:
        target = path.stat()
    except FileNotFoundError:
        return
    except OSError as exc:
        raise OutputError(f"{path}: cannot write: {exc.strerror}") from None
    candidates = [(what, p) for what, p in inputs if p is not None]
    for what, directory in directories:
        candidates.extend((what, p) for p in _files_under(directory))
    for what, candidate in candidates:
        try:
            same = os.path.samestat(target, candidate.stat())
        except OSError:
            continue
        if same:
            raise OutputError(
                f"{path}: is {what}, an input of this command: write the output elsewhere"
            )
    if not force:
        raise OutputError(f"{path}: already exists; pass --force to replace it")


@contextmanager
def private_files() -> Iterator[None]:
    """Create files readable by their owner only (umask 077) for the ``with`` block.

    For a command's whole run: the umask is per process, so this belongs in a CLI, never
    in a library call that may run beside other threads.
    """
    previous = os.umask(PRIVATE_UMASK)
    try:
        yield
    finally:
        os.umask(previous)


def write_failure(exc: OSError, fallback: Path) -> OutputError:
    """One line for an output that could not be written (read-only or full disk, …)."""
    where = exc.filename if exc.filename is not None else fallback
    reason = exc.strerror or type(exc).__name__
    return OutputError(f"{where}: cannot write: {reason}")


def write_private_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` with mode 0600, replacing any earlier file.

    Raises:
        OutputError: the file cannot be written.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            if path.is_file():
                os.fchmod(handle.fileno(), 0o600)
            handle.write(text)
    except OSError as exc:
        raise write_failure(exc, path) from None
