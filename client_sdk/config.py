"""Settings of ``tessera-sdk``: one pydantic-settings class, from ``TESSERA_SDK_*``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from keys.cliutil import read_passphrase
from keys.errors import MissingSecretError

__all__ = [
    "SdkSettings",
    "broker_target",
    "org_passphrase",
    "transport_options",
]


class SdkSettings(BaseSettings):
    """Environment of an organisation's SDK run.

    Attributes:
        passphrase: unlocks the organisation's local keystore (``TESSERA_SDK_PASSPHRASE``).
        token: the organisation's or researcher's broker credential (``TESSERA_SDK_TOKEN``).
        broker_url: default broker URL (``TESSERA_SDK_BROKER_URL``).
        ca_bundle: PEM CAs that may sign the broker's certificate
            (``TESSERA_SDK_CA_BUNDLE``; default: certifi's public CAs).
        tls_client_cert: certificate to present to a broker that asks for mutual TLS
            (``TESSERA_SDK_TLS_CLIENT_CERT``), with ``tls_client_key``.
        tls_client_key: its private key (``TESSERA_SDK_TLS_CLIENT_KEY``).
        insecure_http: allow plain ``http://`` to a host other than loopback
            (``TESSERA_SDK_INSECURE_HTTP``; the credential then travels in clear).
    """

    model_config = SettingsConfigDict(env_prefix="TESSERA_SDK_", extra="ignore")

    passphrase: SecretStr | None = None
    token: SecretStr | None = None
    broker_url: str | None = None
    ca_bundle: Path | None = None
    tls_client_cert: Path | None = None
    tls_client_key: Path | None = None
    insecure_http: bool = False


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


def transport_options(*, insecure_http: bool = False) -> dict[str, Any]:
    """The TLS keywords of :class:`~client_sdk.client.BrokerClient`, from the environment.

    Args:
        insecure_http: ``--insecure-http`` was given (``TESSERA_SDK_INSECURE_HTTP`` also
            allows plain http to a remote broker).

    Raises:
        MissingSecretError: only one of the client certificate and its key is set.
    """
    settings = SdkSettings()
    flag = insecure_http
    cert, key = settings.tls_client_cert, settings.tls_client_key
    if (cert is None) != (key is None):
        raise MissingSecretError("set both TESSERA_SDK_TLS_CLIENT_CERT and _KEY, or neither")
    return {
        "ca_bundle": settings.ca_bundle,
        "client_cert": (cert, key) if cert is not None and key is not None else None,
        "insecure_http": settings.insecure_http or flag,
    }
