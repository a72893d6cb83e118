"""Settings of ``tessera-sdk``: one pydantic-settings class, from ``TESSERA_SDK_*``."""

from __future__ import annotations

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from keys.cliutil import read_passphrase
from keys.errors import MissingSecretError

__all__ = ["SdkSettings", "broker_target", "org_passphrase"]


class SdkSettings(BaseSettings):
    """Environment of an organisation's SDK run.

    Attributes:
        passphrase: unlocks the organisation's local keystore (``TESSERA_SDK_PASSPHRASE``).
        token: the organisation's or researcher's broker credential (``TESSERA_SDK_TOKEN``).
        broker_url: default broker URL (``TESSERA_SDK_BROKER_URL``).
    """

    model_config = SettingsConfigDict(env_prefix="TESSERA_SDK_", extra="ignore")

    passphrase: SecretStr | None = None
    token: SecretStr | None = None
    broker_url: str | None = None


def org_passphrase(*, confirm: bool = False) -> str:
    """The organisation keystore's passphrase: ``TESSERA_SDK_PASSPHRASE`` or a hidden prompt."""
    what = "new organisation keystore passphrase" if confirm else "organisation keystore passphrase"
    return read_passphrase("TESSERA_SDK_PASSPHRASE", what=what, confirm=confirm)


def broker_target(broker_url: str | None) -> tuple[str, SecretStr]:
    """The broker URL (``--broker`` or ``TESSERA_SDK_BROKER_URL``) and the credential.

    Raises:
        MissingSecretError: no URL, or ``TESSERA_SDK_TOKEN`` is unset (never taken from argv).
    """
    settings = SdkSettings()
    url = broker_url or settings.broker_url
    if not url:
        raise MissingSecretError("give --broker URL or set TESSERA_SDK_BROKER_URL")
    if settings.token is None or not settings.token.get_secret_value():
        raise MissingSecretError("set TESSERA_SDK_TOKEN to your broker credential")
    return url, settings.token
