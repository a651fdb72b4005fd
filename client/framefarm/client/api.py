"""The farm's HTTP API as Python calls, over the failover client."""
from __future__ import annotations

import http.client
import os
import shutil
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

from .http import BLOCK, Client, FarmError


class FarmAPI:
    def __init__(self, client: Client) -> None:
        self.client = client

    # -- clients -----------------------------------------------------------------------
    def gateways(self) -> list[dict]:
        return self.client.request("GET", "/v1/gateways").json()["gateways"]

    def missing(self, hashes: list[str]) -> list[str]:
        return self.client.request("POST", "/v1/files/missing", json_body={"hashes": hashes}).json()["missing"]

    def upload(self, sha: str, path: Path, progress: Callable[[int], None] | None = None) -> None:
        with open(path, "rb") as fh:
            self.client.request("PUT", f"/v1/files/{sha}", body=fh, progress=progress, read_timeout=600,
                                headers={"Content-Type": "application/octet-stream",
                                         "Content-Length": str(os.fstat(fh.fileno()).st_size)})

    def submit(self, payload: dict, idempotency_key: str) -> dict:
        return self.client.request("POST", "/v1/jobs", json_body=payload,
                                   headers={"Idempotency-Key": idempotency_key}).json()

    def jobs(self) -> list[dict]:
        return self.client.request("GET", "/v1/jobs").json()["jobs"]

    def job(self, job_id: str, *, wait: float | None = None, rev: int | None = None, parts: bool = False) -> dict:
        params: dict[str, Any] = {"parts": "1" if parts else None}
        if wait:
            params.update(wait=wait, rev=rev)
        return self.client.request("GET", f"/v1/jobs/{job_id}", params=params,
                                   read_timeout=(wait or 0) + 30).json()

    def cancel(self, job_id: str) -> dict:
        return self.client.request("POST", f"/v1/jobs/{job_id}/cancel").json()

    def download_archive(self, job_id: str, dest: Path, progress: Callable[[int], None] | None = None) -> Path:
        """Fetch the final zip: the gateway redirects to a signed link, which is
        fetched without our token (it may point at another host, e.g. GCS)."""
        resp = self.client.request("GET", f"/v1/jobs/{job_id}/archive", ok=(200, 302), stream=True)
        try:
            if resp.status == 302:
                resp.close()
                return download_url(resp.headers["location"], dest, progress)
            _save(resp.raw, dest, progress)
        finally:
            resp.close()
        return dest

    # -- workers -----------------------------------------------------------------------
    def register(self, info: dict) -> dict:
        return self.client.request("POST", "/v1/workers", json_body=info).json()

    def unregister(self, worker_id: str) -> None:
        self.client.request("DELETE", f"/v1/workers/{worker_id}", retry_for=5)

    def claim(self, worker_id: str, wait: float) -> dict | None:
        resp = self.client.request("POST", f"/v1/workers/{worker_id}/claim", json_body={"wait": wait},
                                   read_timeout=wait + 30)
        return None if resp.status == 204 else resp.json()["part"]

    def heartbeat(self, worker_id: str, parts: list[dict]) -> list[str]:
        return self.client.request("POST", f"/v1/workers/{worker_id}/heartbeat", json_body={"parts": parts},
                                   read_timeout=15).json()["abandon"]

    def scene(self, part_id: str, token: str) -> dict:
        return self.client.request("GET", f"/v1/parts/{part_id}/scene", headers=_lease(token)).json()

    def fetch_file(self, part_id: str, token: str, sha: str, dest: Path) -> None:
        resp = self.client.request("GET", f"/v1/parts/{part_id}/files/{sha}", headers=_lease(token),
                                   stream=True, read_timeout=300)
        try:
            _save(resp.raw, dest, None)
        finally:
            resp.close()

    def upload_result(self, part_id: str, token: str, path: Path) -> dict:
        with open(path, "rb") as fh:
            return self.client.request("PUT", f"/v1/parts/{part_id}/result", body=fh, read_timeout=600, headers={
                **_lease(token), "Content-Type": "application/zip",
                "Content-Length": str(os.fstat(fh.fileno()).st_size)}).json()

    def report_failure(self, part_id: str, token: str, message: str, log_tail: str, deterministic: bool) -> dict:
        return self.client.request("POST", f"/v1/parts/{part_id}/failure", headers=_lease(token), json_body={
            "message": message, "log_tail": log_tail, "deterministic": deterministic}).json()

    def release(self, part_id: str, token: str) -> None:
        self.client.request("POST", f"/v1/parts/{part_id}/release", headers=_lease(token), retry_for=5)


def _lease(token: str) -> dict[str, str]:
    return {"X-Lease-Token": token}


def _save(src, dest: Path, progress: Callable[[int], None] | None) -> None:
    """Stream a response into `dest` atomically (a partial download never remains)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    with open(tmp, "wb") as out:
        while block := src.read(BLOCK):
            out.write(block)
            if progress:
                progress(len(block))
    os.replace(tmp, dest)


def download_url(url: str, dest: Path, progress: Callable[[int], None] | None = None) -> Path:
    """Fetch a signed link (no token: the signature is the credential)."""
    parts = urlsplit(url)
    cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = cls(parts.hostname, parts.port, timeout=60)
    try:
        conn.request("GET", parts.path + ("?" + parts.query if parts.query else ""))
        resp = conn.getresponse()
        if resp.status != 200:
            raise FarmError(f"download failed: HTTP {resp.status} {resp.read(300).decode(errors='replace')}",
                            resp.status)
        _save(resp, dest, progress)
    finally:
        conn.close()
    return dest


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
            with zf.open(info) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst, BLOCK)
            written.append(target)
    return written
