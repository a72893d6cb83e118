"""Each module of the reading and normalisation half declares a sorted, complete ``__all__``."""

from __future__ import annotations

import importlib
import inspect

import pytest

MODULES = [
    "client_sdk.cli_check",
    "client_sdk.mapping",
    "client_sdk.normalise",
    "client_sdk.normalise.dates",
    "client_sdk.normalise.defect",
    "client_sdk.normalise.names",
    "client_sdk.normalise.nhs_number",
    "client_sdk.normalise.placeholders",
    "client_sdk.normalise.postcode",
    "client_sdk.normalise.sex",
    "client_sdk.normalise.text",
    "client_sdk.pipeline",
    "client_sdk.quality",
    "client_sdk.readers",
    "client_sdk.readers.csv",
    "client_sdk.readers.fhir",
]


@pytest.mark.parametrize("name", MODULES)
def test_all_is_sorted_and_complete(name):
    module = importlib.import_module(name)
    exported = module.__all__
    assert exported == sorted(exported)
    for public in exported:
        assert hasattr(module, public), public
    if name in ("client_sdk.normalise", "client_sdk.readers"):
        return  # the package re-exports its modules' names
    defined = {
        attr
        for attr, value in vars(module).items()
        if not attr.startswith("_")
        and (inspect.isfunction(value) or inspect.isclass(value))
        and value.__module__ == name
    }
    assert defined <= set(exported)
