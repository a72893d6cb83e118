"""What every operator command shares: settings and a runtime attached to the serving broker.

``tessera-broker admin …``, ``report``, ``evaluate`` and ``audit`` run on the broker host and
talk to the store directly, with the same settings as ``serve``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pydantic

from broker.config import BrokerSettings
from broker.errors import ConfigurationError
from broker.runtime import BrokerRuntime

__all__ = ["data_dir_option", "load_settings", "operator_runtime"]


def load_settings(**overrides: Any) -> BrokerSettings:
    """Settings from ``TESSERA_BROKER_*``, with command-line overrides that are not None.

    Raises:
        ConfigurationError: the settings do not validate (e.g. a placeholder passphrase).
    """
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return BrokerSettings(**given)
    except pydantic.ValidationError as exc:
        problems = "; ".join(str(e.get("msg", "invalid")) for e in exc.errors())
        raise ConfigurationError(f"broker settings: {problems}") from None


@contextlib.contextmanager
def operator_runtime(data_dir: Path | None) -> Iterator[BrokerRuntime]:
    """A runtime for an operator command: attaches to a serving broker's embedded Redis.

    Args:
        data_dir: overrides ``TESSERA_BROKER_DATA_DIR``.
    """
    runtime = BrokerRuntime.open(load_settings(data_dir=data_dir), attach=True)
    try:
        yield runtime
    finally:
        runtime.close()


data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Broker data directory (default TESSERA_BROKER_DATA_DIR or ./var/tessera).",
)
