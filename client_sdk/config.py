"""Settings of ``tessera-sdk``: one pydantic-settings class, from ``TESSERA_SDK_*``."""

from __future__ import annotations

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["SdkSettings"]


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
