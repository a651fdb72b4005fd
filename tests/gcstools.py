"""A real Cloud Storage for tests: `gcp-storage-emulator` in a child process, used through
the real `google-cloud-storage` client, and a service-account key made for the test run.

The key is an RSA key generated here, in a service-account JSON of the shape Google
issues; it signs V4 URLs exactly as a real one would (the emulator does not check
signatures, so tests that care verify them with the public key: see test_gcs.py).
"""
from __future__ import annotations

import json
import secrets
import urllib.request
from pathlib import Path

from farmtools import require, require_module
from framefarm.gateway.localfarm import Process, free_port

BUCKET = "framefarm-test"


def require_gcs() -> str:
    """The emulator executable; the client library must be importable too."""
    require_module("google.cloud.storage", "google-cloud-storage")
    return require("gcp-storage-emulator")


def write_service_account(path: Path) -> Path:
    """A service-account key file with a fresh RSA key (never a real account)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "type": "service_account", "project_id": "framefarm-test", "private_key_id": secrets.token_hex(8),
        "private_key": pem, "client_email": "framefarm-test@framefarm-test.iam.gserviceaccount.com",
        "client_id": "1", "token_uri": "https://oauth2.googleapis.com/token"}))
    path.chmod(0o600)
    return path


class Emulator(Process):
    """gcp-storage-emulator, in memory, with one bucket; ready when its health check answers."""

    def __init__(self, root: Path) -> None:
        exe = require_gcs()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.key_file = write_service_account(root / "service-account.json")
        super().__init__("gcs-emulator", [exe, "start", "--host", "127.0.0.1", "--port", str(self.port),
                                          "--in-memory", "--default-bucket", BUCKET, "--quiet"],
                         root / "emulator.log")

    def start(self) -> "Emulator":
        super().start()

        def answers() -> bool:
            try:
                with urllib.request.urlopen(self.url + "/", timeout=2) as resp:
                    return resp.status == 200
            except OSError:
                return False

        self.wait_until(answers, 30, "answering")
        return self

    def client_env(self) -> dict[str, str]:
        """What a process needs to use this emulator, and to sign URLs with the test key."""
        return {"STORAGE_EMULATOR_HOST": self.url, "GOOGLE_APPLICATION_CREDENTIALS": str(self.key_file)}

    def storage_url(self, prefix: str | None = None) -> str:
        """A fresh prefix per call, so tests sharing the emulator never see each other's objects."""
        return f"gs://{BUCKET}/{prefix or 'test-' + secrets.token_hex(4)}"

    def storage(self, prefix: str | None = None):
        """A GCSStorage on this emulator; the caller's environment must hold client_env()."""
        from framefarm.gateway.gcs_storage import GCSStorage

        return GCSStorage.from_url(self.storage_url(prefix))
