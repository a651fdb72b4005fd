"""The farm's HTTP API as Python calls, over the failover client."""
from __future__ import annotations

import http.client
import logging
import os
import shutil
import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, TypeVar
from urllib.parse import urlsplit

from .http import BLOCK, Client, FarmError, ProgressReader, connection

if TYPE_CHECKING:  # the bodies' types, generated from openapi.yaml; annotations only, nothing at run time
    from .api_types import (ClaimPartReply, CommitResultReply, DirectUpload, GetPinnedBlenderReply, GetSceneReply,
                            Job, JobRequest, Lease, LeaseRef, ListGatewaysReplyGatewaysItem, OpenResultUploadReply,
                            OpenUploadsReply, Outcome, Registration, UploadResultReply, WorkerInfo,
                            WorkerRequest)
    from .api_types import ListPreviewsReply
    from .api_types import GetInputsReply  # a finishing part's (worker/finishing.py)
    from .api_types import WebhookSubscription

log = logging.getLogger("framefarm.client")
# A direct upload that breaks off is sent again whole, to a fresh upload URL.
DIRECT_ATTEMPTS = 3
# A part's result this small goes in the result request itself (read into memory, sent with its
# headers on a kept-alive connection): asking for an upload URL first would double the requests
# of a quick part's claim+complete cycle, for bytes the gateway checks in a moment anyway. The
# gateway bounds it as any result (FRAMEFARM_MAX_UPLOAD_BYTES, its frames' worth). A worker's
# FRAMEFARM_INLINE_RESULT_BYTES sets it (0: every result to an upload URL where the farm has them).
INLINE_RESULT_BYTES = 2 * 1024 * 1024
_Target = TypeVar("_Target", bound=Mapping[str, Any])  # an upload URL and its id: {"url", "id"}


# Handing a part back and unregistering happen while a worker stops, which must not
# wait a whole read timeout on a gateway that accepts connections but never answers
# (frozen, overloaded): past this the client moves on to the next gateway.
STOPPING_READ_S = 3.0


class FarmAPI:
    def __init__(self, client: Client) -> None:
        self.client = client
        self._direct: bool | None = None  # does the farm take uploads straight to its storage?
        self._direct_results: bool | None = None  # and results? (None: not asked yet)
        self.inline_result_bytes = int(os.environ.get("FRAMEFARM_INLINE_RESULT_BYTES", INLINE_RESULT_BYTES))
        # The worker this API last registered: calls about a part name it, because the farm
        # binds each lease to the worker that claimed it (X-Worker-Id).
        self.worker_id = ""

    # -- clients -----------------------------------------------------------------------
    def gateways(self) -> list[ListGatewaysReplyGatewaysItem]:
        return self.client.request("GET", "/v1/gateways").json()["gateways"]

    def missing(self, hashes: list[str]) -> list[str]:
        return self.client.request("POST", "/v1/files/missing", json_body={"hashes": hashes}).json()["missing"]

    def upload(self, sha: str, path: Path, progress: Callable[[int], None] | None = None) -> None:
        """Send one file: straight to the farm's storage where it hands out an upload URL (the
        farm then checks the bytes as it commits them), else streamed through a gateway."""
        size = os.stat(path).st_size
        target = _send_direct(lambda: self._upload_target(sha, size), path, progress, tls=self.client.tls)
        if target:
            self.client.request("POST", f"/v1/files/{sha}/commit", json_body={"id": target["id"]},
                                read_timeout=600)
            return
        with open(path, "rb") as fh:
            self.client.request("PUT", f"/v1/files/{sha}", body=fh, progress=progress, read_timeout=600,
                                headers={"Content-Type": "application/octet-stream",
                                         "Content-Length": str(os.fstat(fh.fileno()).st_size)})

    def _upload_target(self, sha: str, size: int) -> DirectUpload | None:
        if self._direct is False:  # a farm that streams uploads said so once
            return None
        reply: OpenUploadsReply = self.client.request("POST", "/v1/files/uploads",
                                                      json_body={"files": {sha: size}}).json()
        self._direct = reply["direct"]
        return reply["uploads"].get(sha)

    def submit(self, payload: JobRequest, idempotency_key: str) -> Job:
        return self.client.request("POST", "/v1/jobs", json_body=payload,
                                   headers={"Idempotency-Key": idempotency_key}).json()

    def jobs(self) -> list[Job]:
        return self.client.request("GET", "/v1/jobs").json()["jobs"]

    def job(self, job_id: str, *, wait: float | None = None, rev: int | None = None, parts: bool = False) -> Job:
        params: dict[str, Any] = {"parts": "1" if parts else None}
        if wait:
            params.update(wait=wait, rev=rev)
        return self.client.request("GET", f"/v1/jobs/{job_id}", params=params,
                                   read_timeout=(wait or 0) + 30).json()

    def cancel(self, job_id: str) -> Job:
        return self.client.request("POST", f"/v1/jobs/{job_id}/cancel").json()

    def act(self, job_id: str, action: str) -> Job:
        """A job's action: "pause", "resume" or "retry" (cancel above; priority below)."""
        return self.client.request("POST", f"/v1/jobs/{job_id}/{action}").json()

    def set_priority(self, job_id: str, priority: int) -> Job:
        return self.client.request("POST", f"/v1/jobs/{job_id}/priority", json_body={"priority": priority}).json()

    def previews(self, job_id: str) -> ListPreviewsReply:
        """The frames of the job that have a small JPEG preview so far."""
        return self.client.request("GET", f"/v1/jobs/{job_id}/previews").json()

    def preview(self, job_id: str, frame: int) -> bytes | None:
        """One frame's JPEG preview; None where it has none (yet)."""
        try:
            return self.client.request("GET", f"/v1/jobs/{job_id}/previews/{frame}").body
        except FarmError as e:
            if e.code == "no_preview":  # not the job's 404: that one is an error
                return None
            raise

    def webhook_key(self) -> str:
        """The hex key that signs this token's owner's webhooks (HMAC-SHA256)."""
        return self.client.request("GET", "/v1/webhooks/key").json()["key"]

    # -- admin -------------------------------------------------------------------------
    def webhooks(self) -> list[WebhookSubscription]:
        return self.client.request("GET", "/v1/webhooks").json()["webhooks"]

    def add_webhook(self, url: str, fmt: str = "json") -> WebhookSubscription:
        return self.client.request("POST", "/v1/webhooks", json_body={"url": url, "format": fmt}).json()

    def remove_webhook(self, sid: str) -> None:
        self.client.request("DELETE", f"/v1/webhooks/{sid}")

    def workers(self) -> list[WorkerInfo]:
        return self.client.request("GET", "/v1/workers").json()["workers"]

    def drain(self, worker_id: str, drained: bool = True) -> WorkerInfo:
        """Drain a worker (it finishes its parts and takes no more), or undrain it."""
        return self.client.request("POST", f"/v1/workers/{worker_id}/{'drain' if drained else 'undrain'}").json()

    def download_archive(self, job_id: str, dest: Path, progress: Callable[[int], None] | None = None) -> Path:
        """Fetch the final zip: the gateway redirects to a signed link, which is
        fetched without our token (it may point at another host, e.g. GCS)."""
        resp = self.client.request("GET", f"/v1/jobs/{job_id}/archive", ok=(200, 302), stream=True)
        try:
            if resp.status == 302:
                resp.close()
                return download_url(resp.headers["location"], dest, progress, self.client.tls)
            _save(resp.raw, dest, progress)
        finally:
            resp.close()
        return dest

    # -- workers -----------------------------------------------------------------------
    def register(self, info: WorkerRequest) -> Registration:
        reply: Registration = self.client.request("POST", "/v1/workers", json_body=info).json()
        self.worker_id = reply["id"]
        return reply

    def unregister(self, worker_id: str) -> None:
        self.client.request("DELETE", f"/v1/workers/{worker_id}", retry_for=5, read_timeout=STOPPING_READ_S)

    def pinned_blender(self) -> GetPinnedBlenderReply:
        """The Blender build the farm publishes for its workers: version, sha256, size, url."""
        return self.client.request("GET", "/v1/blender").json()

    def claim(self, worker_id: str, wait: float, held: list[str] | None = None) -> Lease | None:
        """A part to render, waiting up to `wait` s; `held`: jobs whose scenes this worker
        holds loaded in a warm Blender, which the farm prefers among jobs of the best priority."""
        body: dict[str, Any] = {"wait": wait}
        if held:
            body["held"] = held[:16]
        resp = self.client.request("POST", f"/v1/workers/{worker_id}/claim", json_body=body,
                                   read_timeout=wait + 30)
        if resp.status == 204:
            return None
        reply: ClaimPartReply = resp.json()
        return reply["part"]

    def heartbeat(self, worker_id: str, parts: list[LeaseRef]) -> list[str]:
        return self.client.request("POST", f"/v1/workers/{worker_id}/heartbeat", json_body={"parts": parts},
                                   read_timeout=15).json()["abandon"]

    def scene(self, part_id: str, token: str) -> GetSceneReply:
        return self.client.request("GET", f"/v1/parts/{part_id}/scene", headers=self._lease(token)).json()

    def fetch_file(self, part_id: str, token: str, sha: str, dest: Path, url: str | None = None) -> None:
        """One scene file: from its signed storage URL when the scene listed one, else through a gateway."""
        self._fetch_leased(f"/v1/parts/{part_id}/files/{sha}", token, dest, url)

    def inputs(self, part_id: str, token: str) -> GetInputsReply:
        """A finishing part's inputs: the job's frame parts (their spans, and signed links where the
        farm's storage signs them)."""
        return self.client.request("GET", f"/v1/parts/{part_id}/inputs", headers=self._lease(token)).json()

    def fetch_input(self, part_id: str, token: str, index: int, dest: Path, url: str | None = None) -> None:
        """One frame part's result zip, for the finishing part `part_id`."""
        self._fetch_leased(f"/v1/parts/{part_id}/inputs/{index}", token, dest, url)

    def _fetch_leased(self, path: str, token: str, dest: Path, url: str | None) -> None:
        """A leased part's download: from its signed storage URL when there is one, else through a gateway."""
        if url:
            download_url(url, dest, tls=self.client.tls)
            return
        resp = self.client.request("GET", path, headers=self._lease(token), stream=True, read_timeout=300)
        try:
            _save(resp.raw, dest, None)
        finally:
            resp.close()

    def upload_result(self, part_id: str, token: str, path: Path, *, next_wait: float | None = None,
                      held: list[str] | None = None) -> UploadResultReply | CommitResultReply:
        """The part's frames: to an upload URL and then committed where the farm hands one out,
        else streamed through a gateway. Either way the farm checks them before they count.
        With `next_wait`, the same request claims the worker's next part (waiting up to that
        long; `held` as for a claim): the answer's `next`, a part or None. A gateway that
        predates it answers without `next`, which reads as None."""
        size = os.stat(path).st_size
        params: dict[str, Any] | None = None
        if next_wait is not None:
            params = {"next": next_wait, "held": (held or [])[:16] or None}

        headers = {**self._lease(token), "Content-Type": "application/zip"}
        if size <= self.inline_result_bytes:
            return self.client.request("PUT", f"/v1/parts/{part_id}/result", body=path.read_bytes(), read_timeout=600,
                                       params=params, headers=headers).json()

        def ask() -> OpenResultUploadReply | None:
            if self._direct_results is False:  # a farm that streams results said so once
                return None
            reply: OpenResultUploadReply = self.client.request(
                "POST", f"/v1/parts/{part_id}/result/upload", headers=self._lease(token), json_body={"size": size}).json()
            self._direct_results = bool(reply["url"])
            return reply if reply["url"] else None

        target = _send_direct(ask, path, tls=self.client.tls)
        if target:
            return self.client.request("POST", f"/v1/parts/{part_id}/result", headers=self._lease(token),
                                       json_body={"id": target["id"]}, params=params, read_timeout=600).json()
        with open(path, "rb") as fh:
            return self.client.request("PUT", f"/v1/parts/{part_id}/result", body=fh, read_timeout=600, params=params,
                                       headers={**headers, "Content-Length": str(size)}).json()

    def report_failure(self, part_id: str, token: str, message: str, log_tail: str, deterministic: bool) -> Outcome:
        return self.client.request("POST", f"/v1/parts/{part_id}/failure", headers=self._lease(token), json_body={
            "message": message, "log_tail": log_tail, "deterministic": deterministic}).json()

    def release(self, part_id: str, token: str, reason: str = "") -> Outcome:
        """Hand a part back without counting an attempt; `reason` becomes its last error."""
        return self.client.request("POST", f"/v1/parts/{part_id}/release", headers=self._lease(token),
                                   json_body={"reason": reason} if reason else None, retry_for=5,
                                   read_timeout=STOPPING_READ_S).json()

    def _lease(self, token: str) -> dict[str, str]:
        return {"X-Lease-Token": token, "X-Worker-Id": self.worker_id}


def _save(src, dest: Path, progress: Callable[[int], None] | None) -> None:
    """Stream a response into `dest` atomically (a partial download never remains)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    try:
        with open(tmp, "wb") as out:
            while block := src.read(BLOCK):
                out.write(block)
                if progress:
                    progress(len(block))
    except BaseException:  # a full disk, a broken connection: no partial file left behind
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, dest)


def _connect(url: str, tls: ssl.SSLContext | None, timeout: float = 60) -> tuple[http.client.HTTPConnection, str]:
    """A connection for a signed or session URL, and the URL's path with its query."""
    parts = urlsplit(url)
    return connection(url, timeout, tls), parts.path + ("?" + parts.query if parts.query else "")


def download_url(url: str, dest: Path, progress: Callable[[int], None] | None = None,
                 tls: ssl.SSLContext | None = None) -> Path:
    """Fetch a signed link (no token: the signature is the credential); `tls` as the client's."""
    conn, target = _connect(url, tls)
    try:
        conn.request("GET", target)
        resp = conn.getresponse()
        if resp.status != 200:
            raise FarmError(f"download failed: HTTP {resp.status} {resp.read(300).decode(errors='replace')}",
                            resp.status)
        _save(resp, dest, progress)
    finally:
        conn.close()
    return dest


class TransferFailed(FarmError):
    """A direct transfer to storage broke off (connection dropped, storage answered 5xx):
    worth trying again with a fresh upload URL."""


def _send_direct(ask: Callable[[], _Target | None], path: Path,
                 progress: Callable[[int], None] | None = None, tls: ssl.SSLContext | None = None) -> _Target | None:
    """Send `path` to the upload URL that `ask()` returns ({"url", "id"}), asking for a fresh
    one when a transfer breaks off. The target it went to; None where the farm wants the
    file streamed through a gateway instead."""
    reported = 0  # a byte sent again after a broken transfer is reported once

    for attempt in range(1, DIRECT_ATTEMPTS + 1):
        target = ask()
        if not target:
            return None
        sent = 0

        def count(n: int) -> None:
            nonlocal sent, reported
            sent += n
            if progress and sent > reported:
                progress(sent - reported)
                reported = sent

        try:
            put_file(target["url"], path, count, tls)
            return target
        except TransferFailed as e:
            if attempt == DIRECT_ATTEMPTS:
                raise
            log.warning("%s; trying again with a new upload URL", e.message)
    return None


def put_file(url: str, path: Path, progress: Callable[[int], None] | None = None,
             tls: ssl.SSLContext | None = None) -> None:
    """Send a file to an upload URL (a resumable-upload session, sent in one PUT). The URL
    is the credential: no token goes with it, and it is never logged."""
    size = os.stat(path).st_size
    conn, target = _connect(url, tls)
    try:
        with open(path, "rb") as fh:
            conn.request("PUT", target, body=ProgressReader(fh, progress), headers={
                "Content-Length": str(size), "Content-Type": "application/octet-stream"})
        resp = conn.getresponse()
        text = resp.read(300).decode(errors="replace")
    except (OSError, http.client.HTTPException) as e:
        raise TransferFailed(f"sending {path.name} to the farm's storage failed: {e or type(e).__name__}") from e
    finally:
        conn.close()
    if resp.status >= 500:
        raise TransferFailed(f"the farm's storage answered HTTP {resp.status} to {path.name}: {text}", resp.status)
    if resp.status not in (200, 201):
        raise FarmError(f"the farm's storage refused {path.name}: HTTP {resp.status} {text}", resp.status)


def extract_frames(archive: Path, output: Path) -> list[Path]:
    """Unpack the final zip into `output`, refusing any entry that would land outside it."""
    import zipfile

    output.mkdir(parents=True, exist_ok=True)
    root = output.resolve()
    written = []
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            target = (root / info.filename).resolve()
            if root not in target.parents or info.is_dir():
                raise FarmError(f"refusing unexpected entry {info.filename!r} in the archive")
            target.parent.mkdir(parents=True, exist_ok=True)  # the scene's output folders (output_names.py)
            with zf.open(info) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst, BLOCK)
            written.append(target)
    return written
