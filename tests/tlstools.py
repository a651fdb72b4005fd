"""A private CA made in the test, and a real gunicorn gateway serving HTTPS with its certificate.

The gateway is started the way an operator starts one, `framefarm gateway --certfile --keyfile`,
so the command's options and gunicorn's TLS settings are what the tests exercise.
"""
from __future__ import annotations

import datetime
import ipaddress
import ssl
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from framefarm.gateway.localfarm import Process, free_port


@dataclass(frozen=True)
class TLSFiles:
    ca: Path  # the CA's certificate: what clients are told to trust
    cert: Path  # the gateway's certificate, for 127.0.0.1 and localhost, signed by the CA
    key: Path


def _pem(obj) -> bytes:
    return obj.public_bytes(serialization.Encoding.PEM)


def make_ca(folder: Path) -> TLSFiles:
    """A fresh CA and a server certificate it signed, valid for an hour either side of now."""
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    hour = datetime.timedelta(hours=1)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Framefarm test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - hour).not_valid_after(now + hour)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - hour).not_valid_after(now + hour)
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                        x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    files = TLSFiles(folder / "ca.pem", folder / "gateway.pem", folder / "gateway.key")
    files.ca.write_bytes(_pem(ca))
    files.cert.write_bytes(_pem(cert))
    files.key.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()))
    files.key.chmod(0o600)
    return files


class TLSGateway(Process):
    """`framefarm gateway` serving HTTPS on a free port; its public URL is https://127.0.0.1:PORT.
    `gunicorn_args` go to gunicorn as they would after `--` on the command line."""

    def __init__(self, tls: TLSFiles, redis_url: str, storage: str, log_path: Path, *,
                 env: dict[str, str] | None = None, gunicorn_args: list[str] | None = None) -> None:
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.tls = tls
        super().__init__(f"tls-gateway:{self.port}", [
            sys.executable, "-m", "framefarm.cli", "gateway", "--bind", f"127.0.0.1:{self.port}",
            "--public-url", self.url, "--certfile", str(tls.cert), "--keyfile", str(tls.key),
            "--", "--workers", "1", "--threads", "16", *(gunicorn_args or [])], log_path, {
            "FRAMEFARM_REDIS_URL": redis_url, "FRAMEFARM_STORAGE": storage, "FRAMEFARM_MAX_WAITERS": "8",
            **(env or {})})

    def start(self) -> "TLSGateway":
        super().start()
        context = ssl.create_default_context(cafile=str(self.tls.ca))

        def ready() -> bool:
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=2, context=context) as resp:
                    return resp.status == 200
            except OSError:
                return False

        self.wait_until(ready, 60, "ready")
        return self
