"""What every operator command shares: settings and a runtime attached to the serving broker.

``tessera-broker admin …``, ``report``, ``evaluate`` and ``audit`` run on the broker host and
talk to the store directly, with the same settings as ``serve``. Only ``serve`` and ``init``
create a data directory: every other command refuses to run without one, so that a
command run from another directory (a relative ``TESSERA_BROKER_DATA_DIR``) cannot start
a second, empty broker whose credentials the serving one rejects.
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

__all__ = ["data_dir_option", "load_settings", "operator_runtime", "require_broker_data"]


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


def require_broker_data(settings: BrokerSettings) -> None:
    """Refuse to go on unless the broker's keystore exists (``serve`` or ``init`` made it).

    Raises:
        ConfigurationError: ``no broker data at <absolute path>``, with what to do.
    """
    keystore = settings.resolved_keystore_path
    if keystore.is_file():
        return
    where = (settings.data_dir if settings.keystore_path is None else keystore).absolute()
    raise ConfigurationError(
        f"no broker data at {where} (run this where the broker serves, or set "
        "TESSERA_BROKER_DATA_DIR or --data-dir to its absolute path; "
        "`tessera-broker init` or `serve` creates one)"
    )


@contextlib.contextmanager
def operator_runtime(data_dir: Path | None) -> Iterator[BrokerRuntime]:
    """A runtime for an operator command: attaches to a serving broker's embedded Redis.

    Args:
        data_dir: overrides ``TESSERA_BROKER_DATA_DIR``.

    Raises:
        ConfigurationError: no broker data there (see :func:`require_broker_data`).
    """
    settings = load_settings(data_dir=data_dir)
    require_broker_data(settings)
    runtime = BrokerRuntime.open(settings, attach=True)
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
