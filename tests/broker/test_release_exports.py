"""The agreement and release modules declare a sorted, complete ``__all__``.

Sorted as ruff's RUF022 sorts: CONSTANTS, then Classes, then functions. A router module
exports only its router (and its path parameter type).
"""

from __future__ import annotations

import importlib
import inspect

import pytest

MODULES = [
    "broker.agreements",
    "broker.api.agreements",
    "broker.api.releases",
    "broker.cli_agreement",
    "broker.release",
    "broker.store.agreements_store",
    "client_sdk.cli_release",
    "client_sdk.export",
    "client_sdk.release_client",
    "client_sdk.risk",
    "keys.wire_release",
]


def _isort_key(name: str) -> tuple[int, str]:
    if name.isupper():
        return 0, name
    return (1 if name[0].isupper() else 2), name


@pytest.mark.parametrize("name", MODULES)
def test_all_is_sorted_and_complete(name):
    module = importlib.import_module(name)
    exported = list(module.__all__)
    assert exported == sorted(exported, key=_isort_key)
    for public in exported:
        assert hasattr(module, public), public
    if name.startswith("broker.api."):
        return  # a router module exports its router; its routes are reached through it
    defined = {
        attr
        for attr, value in vars(module).items()
        if not attr.startswith("_")
        and (inspect.isfunction(value) or inspect.isclass(value))
        and value.__module__ == name
    }
    assert defined <= set(exported)
