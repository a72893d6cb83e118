"""The hot path that the build compiles with mypyc, named once for every way of building.

``setup.py`` (so ``pip install .``, ``pip wheel .`` and the Makefile's editable install)
and ``tools/compile_hot_path.py`` both take their list and their extensions from here:
the SDK's reading, normalising and tokenising, the token chunk codec, and the broker's
linkage. Package ``__init__`` modules are never compiled: they only gather names, and a
compiled one hides its submodules. Compiled classes cannot be subclassed by plain Python
classes and pickle only with help, so the hot path keeps to classes nobody outside it
extends or pickles (the SDK's pickled ones stay Python classes: ``mypyc_attr``). Each
top-level package gets its own compilation group, so its shared library
lives inside the package (``client_sdk/hot_path__mypyc…so``, ``keys/…``, ``broker/…``):
``keys`` needs nothing of the SDK, and a CLI started from any directory imports it.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

__all__ = ["HOT_PATH", "hot_path_extensions"]

ROOT = Path(__file__).resolve().parents[1]

HOT_PATH: tuple[str, ...] = (
    "client_sdk/readers/csv.py",
    "client_sdk/pipeline.py",
    "client_sdk/rows.py",
    "client_sdk/tokenise.py",
    "client_sdk/evidence.py",
    "keys/derive.py",
    "keys/chunk.py",
    *sorted(
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "client_sdk" / "normalise").glob("*.py")
        if p.name != "__init__.py"  # a compiled package __init__ hides its submodules
    ),
    # every module of broker/linkage/ but its __init__, and the store's linkage codec,
    # mirror and Redis I/O
    *sorted(
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "broker" / "linkage").glob("*.py")
        if p.name != "__init__.py"
    ),
    # the probabilistic stage's model (pure: scoring every candidate pair is its hot loop)
    *sorted(
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "broker" / "matching").glob("*.py")
        if p.name != "__init__.py"
    ),
    "broker/store/linkage_codec.py",
    "broker/store/linkage_counts.py",
    "broker/store/linkage_evidence.py",
    "broker/store/linkage_mirror.py",
    "broker/store/linkage_store.py",
)


def hot_path_extensions(paths: tuple[str, ...] = HOT_PATH) -> list[Any]:
    """mypyc's extensions for ``paths`` (relative to the repository root), one group each.

    Missing third-party imports are typed as ``Any`` rather than failing the build, so a
    wheel builds in pip's isolated environment without the runtime dependencies.
    """
    from mypyc.build import mypycify

    groups: dict[str, list[str]] = defaultdict(list)
    for path in paths:
        groups[path.split("/", 1)[0]].append(path)
    extensions: list[Any] = mypycify(
        ["--ignore-missing-imports", *sorted(paths)],
        separate=[(files, f"{package}.hot_path") for package, files in groups.items()],
    )
    return extensions


if __name__ == "__main__":  # the Makefile's list of files the compiled build depends on
    print(" ".join(HOT_PATH))
