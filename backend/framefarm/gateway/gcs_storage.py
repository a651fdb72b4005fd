"""Google Cloud Storage behind the farm's Storage interface: FRAMEFARM_STORAGE=gs://bucket/prefix.

Every key lives under `prefix/` in the bucket, so one bucket can hold several farms, or
sit beside other data with lifecycle rules per prefix (docs/cloud.md).

Credentials come the Google way and never from the repository or the farm's settings:
Application Default Credentials (a VM's or Cloud Run's service account, `gcloud auth
application-default login`) or a key file named by GOOGLE_APPLICATION_CREDENTIALS. With
STORAGE_EMULATOR_HOST set the client talks to that emulator, anonymously (the tests).

Writes are resumable uploads sent in fixed chunks: memory stays at one chunk whatever the
object's size, and the object appears only when the last chunk lands, so a writer whose
block raises cancels the upload and leaves nothing under the key. Reads stream in chunks
and are pinned to the generation they started on, so an object replaced mid-read fails
the read instead of mixing two versions.

Direct uploads go to resumable-upload sessions that the gateway opens with its own
credentials: the session URL is bound to one object name and one size, and is the only
credential the uploader gets (so no signing ability is needed for uploads). `promote`
reads the uploaded object pinned to its generation and rewrites exactly that generation
to the final name, inside Cloud Storage, so the bytes checked are the bytes kept.

Signed URLs are V4 and expire. A service-account key signs locally; credentials without
a private key (a VM's or Cloud Run's service account) sign through the IAM signBlob API,
which needs the account to hold roles/iam.serviceAccountTokenCreator on itself.
"""
from __future__ import annotations

import contextlib
import logging
import os
import threading
from datetime import timedelta
from typing import Any, BinaryIO, Callable, Iterator
from urllib.parse import urlparse

import google.auth
import google.auth.exceptions
import google.auth.transport.requests
import requests
from google.api_core import exceptions as gexc
from google.auth.credentials import AnonymousCredentials, Signing
from google.cloud import storage as gcs
from google.oauth2 import service_account

from .storage import ObjectInfo, ObjectMissing, StorageError, StorageUnavailable, check_key

log = logging.getLogger("framefarm.gateway.gcs")

# Resumable uploads move in multiples of 256 KiB; one chunk is the writer's memory.
CHUNK = 8 * 1024 * 1024
# A reader holds about three copies of its chunk at once (the response, its buffer, the
# block handed out), so reads use smaller ranges: with the writer's chunk that keeps a
# gateway assembling a job (one reader, one writer) within a few tens of MiB.
READ_CHUNK = 4 * 1024 * 1024
_TRANSIENT = (gexc.ServerError, gexc.TooManyRequests, requests.ConnectionError, requests.Timeout,
              google.auth.exceptions.TransportError)


@contextlib.contextmanager
def _errors(key: str) -> Iterator[None]:
    """Google's exceptions as the farm's: an outage is StorageUnavailable (a 503 for
    clients), a refusal (bad credentials, missing bucket) a StorageError naming the key."""
    try:
        yield
    except _TRANSIENT as e:
        raise StorageUnavailable(f"Cloud Storage did not answer for {key}: {e}") from e
    except gexc.GoogleAPICallError as e:
        raise StorageError(f"Cloud Storage refused {key}: {e.message}") from e
    except google.auth.exceptions.GoogleAuthError as e:  # credentials refused, signing failed
        raise StorageError(f"Google credentials failed for {key}: {e}") from e


class GCSStorage:
    def __init__(self, bucket: str, prefix: str = "", client: gcs.Client | None = None) -> None:
        try:
            # The farm only touches one bucket, so no project is needed (or guessed).
            self.client = client or gcs.Client(project=None)
        except google.auth.exceptions.DefaultCredentialsError as e:
            raise StorageError(f"gs://{bucket} needs Google credentials: Application Default Credentials "
                               f"or a key file named by GOOGLE_APPLICATION_CREDENTIALS ({e})") from None
        self.bucket = self.client.bucket(bucket)
        self.prefix = prefix.strip("/")
        self._signer_lock = threading.Lock()
        self._signer: Any = None  # credentials that can sign (google-auth has no common type); False when none can

    @classmethod
    def from_url(cls, url: str) -> "GCSStorage":
        parsed = urlparse(url)
        if parsed.scheme != "gs" or not parsed.netloc:
            raise StorageError(f"{url!r} is not a gs://bucket/prefix URL")
        if parsed.query or parsed.fragment:
            raise StorageError(f"{url!r}: a gs:// storage URL takes no query or fragment")
        return cls(parsed.netloc, parsed.path)

    def __repr__(self) -> str:
        return f"GCSStorage(gs://{self.bucket.name}/{self.prefix})"

    def _name(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _key(self, name: str) -> str:
        return name[len(self.prefix) + 1:] if self.prefix else name

    def exists(self, key: str) -> bool:
        with _errors(key):
            return self.bucket.blob(self._name(key)).exists()

    def size(self, key: str) -> int | None:
        with _errors(key):
            blob = self.bucket.get_blob(self._name(key))
        return None if blob is None else blob.size

    def open_read(self, key: str) -> BinaryIO:
        with _errors(key):
            blob = self.bucket.get_blob(self._name(key))
        if blob is None:
            raise StorageError(f"no object {key}")
        return blob.open("rb", chunk_size=READ_CHUNK, if_generation_match=blob.generation)

    @contextlib.contextmanager
    def writer(self, key: str) -> Iterator[BinaryIO]:
        blob = self.bucket.blob(self._name(key))
        out = blob.open("wb", chunk_size=CHUNK, ignore_flush=True, content_type="application/octet-stream")
        try:
            yield out
            with _errors(key):
                out.close()  # sends the last chunk: only now does the object exist
        except BaseException as e:
            with contextlib.suppress(Exception):
                out.terminate()  # cancels the resumable upload; nothing was committed
            if isinstance(e, _TRANSIENT):
                raise StorageUnavailable(f"Cloud Storage did not answer while writing {key}: {e}") from e
            raise

    def delete(self, key: str) -> None:
        with _errors(key), contextlib.suppress(gexc.NotFound):
            self.bucket.blob(self._name(key)).delete()

    def delete_prefix(self, prefix: str) -> None:
        for info in self.list_prefix(prefix):
            self.delete(info.key)

    def list_prefix(self, prefix: str) -> Iterator[ObjectInfo]:
        with _errors(prefix):
            for blob in self.client.list_blobs(self.bucket, prefix=self._name(prefix) + "/"):
                yield ObjectInfo(self._key(blob.name), blob.size or 0, blob.updated.timestamp())

    def local_path(self, key: str) -> None:
        return None

    def signed_url(self, key: str, ttl_s: int, method: str = "GET", filename: str | None = None) -> str | None:
        how = self._sign_with()
        if how is None:
            return None
        extra = {"response_disposition": f'attachment; filename="{filename}"'} if filename else {}
        with _errors(key):
            return self.bucket.blob(self._name(key)).generate_signed_url(
                version="v4", expiration=timedelta(seconds=ttl_s), method=method, **how, **extra)

    def upload_url(self, key: str, size: int) -> str | None:
        with _errors(key):
            return self.bucket.blob(self._name(key)).create_resumable_upload_session(
                content_type="application/octet-stream", size=size)

    def promote(self, src: str, dst: str, verify: Callable[[BinaryIO], None]) -> bool:
        with _errors(src):
            source = self.bucket.get_blob(self._name(src))
        if source is None:
            raise ObjectMissing(f"no object {src}")
        with _errors(src), source.open("rb", chunk_size=READ_CHUNK, if_generation_match=source.generation) as fh:
            verify(fh)
        target = self.bucket.blob(self._name(dst))
        token = None
        with _errors(dst):
            # An existing `dst` is kept rather than replaced under its readers; the check
            # answers at once, the precondition closes the race (and the emulator ignores it).
            moved = not target.exists()
            try:
                while moved:  # a rewrite of a big object may take several calls
                    token, _, _ = target.rewrite(source, token=token, if_generation_match=0)
                    if token is None:
                        break
            except gexc.PreconditionFailed:
                moved = False
        self.delete(src)
        return moved

    def _sign_with(self) -> dict | None:
        """Keyword arguments for generate_signed_url, or None when nothing here can sign."""
        with self._signer_lock:
            if self._signer is None:
                self._signer = _find_signer(self.client) or False
            creds = self._signer
            if not creds:
                return None
            if isinstance(creds, Signing):
                return {"credentials": creds}
            if not creds.valid:
                with _errors("signing credentials"):
                    creds.refresh(google.auth.transport.requests.Request())
            return {"service_account_email": creds.service_account_email, "access_token": creds.token}

    def ping(self) -> None:
        with _errors(f"gs://{self.bucket.name}/{self.prefix}"):
            next(iter(self.client.list_blobs(self.bucket, prefix=self.prefix, max_results=1)), None)


def _find_signer(client: gcs.Client):
    """The credentials that will sign URLs. Against an emulator the client is anonymous;
    the service-account key file named by GOOGLE_APPLICATION_CREDENTIALS then signs
    (the tests make one)."""
    creds = client._credentials
    if isinstance(creds, AnonymousCredentials):
        path = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
        if not path:
            log.info("no credentials to sign URLs with: downloads stream through the gateway")
            return None
        creds = service_account.Credentials.from_service_account_file(path)
    if isinstance(creds, Signing) or getattr(creds, "service_account_email", None):
        return creds
    log.info("credentials of type %s cannot sign URLs: downloads stream through the gateway",
             type(creds).__name__)
    return None
