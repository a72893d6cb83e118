"""Every module of keys, client_sdk, broker and tessera_synth declares a complete ``__all__``.

Sorting is ruff's job (RUF022, isort-style); this test checks that every name listed
exists, and that every public function and class a module defines is listed. Package
``__init__`` modules and routers re-export or expose what they gather, so only their
listed names are checked. Modules of the hot path may be mypyc-compiled (``make setup``):
their functions are builtins, and each package's shared library is no module of ours.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import broker
import client_sdk
import keys
import tessera_synth


def _modules() -> list[str]:
    names: list[str] = []
    for package in (keys, client_sdk, broker, tessera_synth):
        names.append(package.__name__)
        prefix = package.__name__ + "."
        names += [
            m.name
            for m in pkgutil.walk_packages(package.__path__, prefix)
            if not m.name.endswith("__mypyc")  # the compiled hot path's shared library
        ]
    return sorted(names)


MODULES = _modules()


def test_every_package_is_walked() -> None:
    for expected in ("keys.derive", "client_sdk.normalise.names", "broker.store.linkage_store"):
        assert expected in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_all_is_declared_and_complete(name: str) -> None:
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    assert isinstance(exported, list), f"{name} declares no __all__"
    assert len(set(exported)) == len(exported), f"{name}: a name is listed twice"
    for public in exported:
        assert hasattr(module, public), f"{name}.__all__ lists missing {public}"
    if hasattr(module, "__path__") or name.startswith("broker.api."):
        return
    defined = {
        attr
        for attr, value in vars(module).items()
        if not attr.startswith("_")
        and (inspect.isfunction(value) or inspect.isbuiltin(value) or inspect.isclass(value))
        and value.__module__ == name
    }
    missing = defined - set(exported)
    assert not missing, f"{name}: public but not in __all__: {sorted(missing)}"
