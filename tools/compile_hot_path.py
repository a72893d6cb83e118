"""Compile the hot paths with mypyc, in place: ``python tools/compile_hot_path.py FILE…``.

Run by ``make setup`` (the Makefile names the files: the SDK's reading, normalising and
tokenising, and the broker's linkage — the modules of ``broker/linkage/`` and the
store's linkage codec, mirror and Redis I/O). Each top-level package gets its own compilation
group, so its shared library lives inside the package (``client_sdk/hot_path__mypyc…so``,
``keys/…``, ``broker/…``): a CLI started from any directory imports it like the package
itself, and the packages stay as independent as their sources. The extensions sit beside
the sources and Python imports them first; the sources stay the truth, and an edit needs
this run again (``make setup`` does that, and the tests refuse a compiled module older
than its source).

It refuses a package's ``__init__.py`` before it starts: those only gather names (there
is nothing to gain), and the hot path keeps clear of mypyc's weak spots with packages.
Compiled classes cannot be subclassed by plain Python classes and pickle only with
help, so the hot path keeps to classes nobody outside it extends or pickles.
"""

from __future__ import annotations

import sys
from collections import defaultdict

from mypyc.build import mypycify
from setuptools import setup


def main(paths: list[str]) -> None:
    """Build the extensions for ``paths`` (``.py`` files under the repository root)."""
    packages = [path for path in paths if path.endswith("/__init__.py")]
    if packages:
        sys.exit(f"mypyc does not compile package __init__ modules: {' '.join(packages)}")
    groups: dict[str, list[str]] = defaultdict(list)
    for path in paths:
        groups[path.split("/", 1)[0]].append(path)
    setup(
        name="tessera-hot-path",
        ext_modules=mypycify(
            sorted(paths),
            separate=[(files, f"{package}.hot_path") for package, files in groups.items()],
        ),
        script_args=["--quiet", "build_ext", "--inplace"],
    )


if __name__ == "__main__":
    main(sys.argv[1:])
