"""A throwaway certificate authority for TLS tests, made at test time and never committed.

:func:`make_tls_material` writes a CA, a server certificate for ``127.0.0.1`` and
``localhost`` signed by it, and a client certificate for mutual TLS, each with its key,
into a directory of the test's own; :func:`tls_broker` starts a broker serving HTTPS.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.support.harness import BrokerProcess, free_port

__all__ = ["TlsBroker", "TlsMaterial", "make_tls_material", "tls_broker", "without_tessera_env"]


@dataclass(frozen=True)
class TlsMaterial:
    """PEM files of one throwaway CA and the certificates it signed."""

    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca_cert: Path

    def context(self, *, client: bool = False) -> ssl.SSLContext:
        """A client-side context trusting the CA (presenting the client cert if asked)."""
        context = ssl.create_default_context(cafile=str(self.ca_cert))
        if client:
            context.load_cert_chain(str(self.client_cert), str(self.client_key))
        return context


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    *,
    server: bool = False,
    client: bool = False,
) -> x509.Certificate:
    now = datetime.now(UTC)
    issuer_name, issuer_key = issuer if issuer is not None else (_name(subject), key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if issuer is None:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )  # fmt: skip
        builder = builder.add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
        )
    else:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    if client:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256())


def make_tls_material(directory: Path) -> TlsMaterial:
    """A fresh CA, a server and a client certificate signed by it, and an unrelated CA."""
    directory.mkdir(parents=True, exist_ok=True)
    pem = serialization.Encoding.PEM
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("tessera test CA", ca_key, None)
    material = TlsMaterial(
        ca_cert=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server.key",
        client_cert=directory / "client.pem",
        client_key=directory / "client.key",
        other_ca_cert=directory / "other-ca.pem",
    )
    material.ca_cert.write_bytes(ca.public_bytes(pem))
    for cert_path, key_path, subject, server in (
        (material.server_cert, material.server_key, "127.0.0.1", True),
        (material.client_cert, material.client_key, "tessera test client", False),
    ):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _certificate(subject, key, (ca.subject, ca_key), server=server, client=not server)
        cert_path.write_bytes(cert.public_bytes(pem))
        _write_key(key_path, key)
    other_key = ec.generate_private_key(ec.SECP256R1())
    other_ca = _certificate("another CA", other_key, None)
    material.other_ca_cert.write_bytes(other_ca.public_bytes(pem))
    return material


@dataclass
class TlsBroker(BrokerProcess):
    """A broker serving HTTPS; readiness is checked through the throwaway CA."""

    tls: TlsMaterial | None = None
    mutual: bool = False

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Wait until ``/readyz`` answers 200 over verified TLS."""
        assert self.tls is not None
        verify = self.tls.context(client=self.mutual)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"broker exited at start; see {self.log_path}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/readyz", timeout=2, verify=verify).status_code == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"broker not ready in {timeout}s; see {self.log_path}")

    def client(self, credential: str | None = None) -> httpx.Client:
        """An httpx client that trusts the CA (and presents the client cert under mTLS)."""
        assert self.tls is not None
        headers = {"Authorization": f"Bearer {credential}"} if credential else {}
        verify = self.tls.context(client=self.mutual)
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, verify=verify)


@contextlib.contextmanager
def tls_broker(
    data_dir: Path, tls: TlsMaterial, *, mutual: bool = False, **extra_env: str
) -> Iterator[TlsBroker]:
    """A broker serving HTTPS on a free loopback port for the ``with`` block."""
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {
        "TESSERA_BROKER_DATA_DIR": str(data_dir),
        "TESSERA_BROKER_PORT": str(port),
        "TESSERA_BROKER_HOST": "127.0.0.1",
        "TESSERA_BROKER_KEYSTORE_PASSPHRASE": "test-" + secrets.token_hex(12),
        "TESSERA_BROKER_TLS_CERT": str(tls.server_cert),
        "TESSERA_BROKER_TLS_KEY": str(tls.server_key),
        **({"TESSERA_BROKER_TLS_CLIENT_CA": str(tls.ca_cert)} if mutual else {}),
        **extra_env,
    }
    broker = TlsBroker(
        url=f"https://127.0.0.1:{port}",
        data_dir=data_dir,
        env=env,
        log_path=data_dir / "broker.log",
        tls=tls,
        mutual=mutual,
    )
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def without_tessera_env() -> dict[str, str]:
    """The environment minus every ``TESSERA_*`` variable."""
    return {k: v for k, v in os.environ.items() if not k.startswith("TESSERA_")}
