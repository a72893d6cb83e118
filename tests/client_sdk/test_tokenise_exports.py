"""Each module of the spec and tokenising half declares a sorted, complete ``__all__``."""

from __future__ import annotations

import importlib
import inspect

import pytest

MODULES = [
    "client_sdk",
    "client_sdk.cli_tokenise",
    "client_sdk.local_index",
    "client_sdk.normalise.transforms",
    "client_sdk.speclint",
    "client_sdk.tokenise",
    "keys.spec",
]


@pytest.mark.parametrize("name", MODULES)
def test_all_is_sorted_and_complete(name: str) -> None:
    module = importlib.import_module(name)
    exported = module.__all__
    assert exported == sorted(exported)
    for public in exported:
        assert hasattr(module, public), public
    if name == "client_sdk":
        return  # the package re-exports its modules' names
    defined = {
        attr
        for attr, value in vars(module).items()
        if not attr.startswith("_")
        and (inspect.isfunction(value) or inspect.isclass(value))
        and value.__module__ == name
    }
    assert defined <= set(exported)
