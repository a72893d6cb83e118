"""The audit, register and dashboard modules declare a sorted, complete ``__all__``."""

from __future__ import annotations

import importlib
import inspect

import pytest

MODULES = [
    "broker.api.audit",
    "broker.api.pages",
    "broker.audit",
    "broker.cli_audit",
    "broker.dashboard",
    "broker.register",
    "broker.store.audit_log",
    "broker.store.dataset_quality",
    "broker.store.sessions",
]


def _isort_key(name: str) -> tuple[int, str]:
    """Constants, then classes, then functions (ruff's RUF022 order)."""
    kind = 0 if name.isupper() else 1 if name[0].isupper() else 2
    return kind, name


@pytest.mark.parametrize("name", MODULES)
def test_all_is_sorted_and_complete(name):
    module = importlib.import_module(name)
    exported = list(module.__all__)
    assert exported == sorted(exported, key=_isort_key)
    for public in exported:
        assert hasattr(module, public), public
    if name.startswith("broker.api."):
        return  # routers export the router; their route functions are reached through it
    defined = {
        attr
        for attr, value in vars(module).items()
        if not attr.startswith("_")
        and (inspect.isfunction(value) or inspect.isclass(value))
        and value.__module__ == name
    }
    assert defined <= set(exported)
