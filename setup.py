"""Build hook: compile the hot path with mypyc when it can, else build pure Python.

Everything else about the distribution is in pyproject.toml. ``pip install .`` and
``pip wheel .`` give compiled modules wherever a C compiler and Python's headers are
present; set ``TESSERA_PURE_PYTHON=1`` to build without them. The compiled and the pure
install behave the same (tests/client_sdk/test_compiled.py); only speed differs.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from setuptools import setup

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _compiler_works() -> bool:
    """Whether a C compiler builds against this Python's headers."""
    import sysconfig
    import tempfile

    from setuptools._distutils.ccompiler import new_compiler
    from setuptools._distutils.sysconfig import customize_compiler

    compiler = new_compiler()
    customize_compiler(compiler)
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "probe.c"
        source.write_text("#include <Python.h>\nint main(void) { return 0; }\n")
        try:
            compiler.compile(
                [str(source)], output_dir=tmp, include_dirs=[sysconfig.get_paths()["include"]]
            )
        except Exception:
            return False
    return True


def _extensions() -> list[Any]:
    if os.environ.get("TESSERA_PURE_PYTHON") or not _compiler_works():
        print("tessera: building pure Python (no C compiler, or TESSERA_PURE_PYTHON set)")
        return []
    try:
        from tools.hot_path import hot_path_extensions

        return hot_path_extensions()
    except Exception as exc:  # mypyc missing or refusing: the pure build still works
        print(f"tessera: mypyc could not compile the hot path ({exc}); building pure Python")
        return []


setup(ext_modules=_extensions())
