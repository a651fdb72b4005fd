"""Endpoints for worker agents: register, claim, heartbeat, fetch scenes, report results.

Every call about a part carries its lease token (header X-Lease-Token). A token
that no longer fences the part (the lease expired and the part went to another
worker, or the job ended) is answered 409 and changes nothing.
"""
from __future__ import annotations

import logging
import re
import secrets
import tempfile
from pathlib import Path
from typing import BinaryIO

from flask import Blueprint, current_app, g, jsonify, request, send_file

from . import archive, jobs, keys, scheduling, uploads
from .auth import requires
from .errors import ApiError, bad_request, conflict, not_found
from .gateways import redis_now_ms
from .storage import ObjectMissing, StorageError

bp = Blueprint("worker", __name__, url_prefix="/v1")
log = logging.getLogger("framefarm.gateway.worker")

MAX_MESSAGE = 4000
MAX_LOG_TAIL = 16000
_VERSION = re.compile(r"(\d{1,2})\.(\d{1,2})(\.|$)", re.ASCII)


def farm():
    return current_app.extensions["framefarm"]


def _waiters() -> scheduling.Waiters:
    return current_app.extensions["framefarm.waiters"]


def _body() -> dict:
    body = request.get_json(silent=True)
    if body is None and request.content_length in (None, 0):
        return {}
    if not isinstance(body, dict):
        raise bad_request("the body must be a JSON object")
    return body


def parse_version(value) -> int:
    """304 or '3.4' or '3.4.1' -> 304."""
    # ASCII digits only, and few of them: str.isdigit() accepts '²', which int() refuses.
    match = _VERSION.match(value) if isinstance(value, str) else None
    number = int(match[1]) * 100 + int(match[2]) if match else value
    if isinstance(number, int) and not isinstance(number, bool) and 100 <= number < 10000:
        return number
    raise bad_request(f"blender_version must look like '3.4.1' or 304, got {value!r}", "bad_version")


def _text(body: dict, name: str, limit: int, default: str = "") -> str:
    value = body.get(name, default)
    if not isinstance(value, str):
        raise bad_request(f"{name} must be text")
    return value[-limit:] if name == "log_tail" else value[:limit]


@bp.post("/workers")
@requires("worker")
def register():
    f, body = farm(), _body()
    version = parse_version(body.get("blender_version"))
    devices = body.get("devices", ["CPU"])
    if not isinstance(devices, list) or not all(isinstance(d, str) for d in devices):
        raise bad_request("devices must be a list of device names")
    slots = body.get("slots", 1)
    if not isinstance(slots, int) or isinstance(slots, bool) or not 1 <= slots <= 64:
        raise bad_request("slots must be a whole number from 1 to 64")
    wid = "w-" + secrets.token_hex(6)
    s = f.settings
    pipe = f.redis.pipeline()
    pipe.hset(keys.worker(wid), mapping={
        "name": _text(body, "name", 200, wid), "blender_version": version,
        "blender": _text(body, "blender", 100), "device": _text(body, "device", 40, "CPU"),
        "devices": ",".join(devices)[:200], "slots": slots, "owner": g.identity.owner,
        "last_seen": redis_now_ms(f.redis)})
    pipe.expire(keys.worker(wid), int(s.worker_timeout_s))
    pipe.zadd(keys.WORKERS, {wid: redis_now_ms(f.redis)})
    pipe.execute()
    return jsonify({"id": wid, "heartbeat_s": s.heartbeat_s, "lease_s": s.lease_s,
                    "claim_wait_s": s.claim_wait_s}), 201


def _worker(wid: str) -> dict[str, str]:
    raw = farm().redis.hgetall(keys.worker(wid))
    w = {k.decode(): v.decode() for k, v in raw.items()}
    if not w or w.get("owner") != g.identity.owner:
        raise ApiError(404, "unknown_worker", f"worker {wid} is not registered (or expired): register again")
    return w


@bp.delete("/workers/<wid>")
@requires("worker")
def unregister(wid: str):
    f = farm()
    _worker(wid)
    f.redis.zrem(keys.WORKERS, wid)
    f.redis.delete(keys.worker(wid))
    return jsonify({"ok": True})


@bp.post("/workers/<wid>/claim")
@requires("worker")
def claim(wid: str):
    f, body = farm(), _body()
    w = _worker(wid)
    wait = body.get("wait", f.settings.claim_wait_s)
    if not isinstance(wait, (int, float)) or isinstance(wait, bool) or not wait >= 0:  # NaN waits forever
        raise bad_request("wait must be a number of seconds")
    try:
        lease = scheduling.claim(f, wid, int(w["blender_version"]), min(wait, f.settings.claim_wait_s),
                                 _waiters())
    except scheduling.UnknownWorker:
        raise ApiError(404, "unknown_worker", f"worker {wid} expired: register again") from None
    if lease is None:
        return "", 204
    job_id = keys.job_of_part(lease.part_id)
    job = jobs.load(f, job_id, None)
    return jsonify({"part": {
        "id": lease.part_id, "job": job_id, "index": lease.span.index,
        "span": lease.span.to_json(), "frames": lease.span.frames(), "token": lease.token, "deadline_ms": lease.deadline_ms,
        "attempts": lease.attempts, "scene_hash": job["scene_hash"], "main": job["main"],
        "blender_version": int(job["blender_version"])}})


@bp.post("/workers/<wid>/heartbeat")
@requires("worker")
def heartbeat(wid: str):
    f, body = farm(), _body()
    _worker(wid)
    held = body.get("parts", [])
    if not isinstance(held, list) or not all(
            isinstance(p, dict) and isinstance(p.get("id"), str) and isinstance(p.get("token"), str)
            for p in held):
        raise bad_request('parts must be a list of {"id": ..., "token": ...}')
    s = f.settings
    args = [wid, f.ms(s.lease_s), int(s.worker_timeout_s)]
    for p in held:
        args += [p["id"], p["token"]]
    res = f.scripts.heartbeat(args=args)
    if res[0] == b"unknown_worker":
        raise ApiError(404, "unknown_worker", f"worker {wid} expired: register again")
    return jsonify({"abandon": [x.decode() for x in res[1:]]})


def _leased(pid: str) -> dict[str, str]:
    """The part, if the request's lease token still fences it; else 409."""
    token = request.headers.get("X-Lease-Token", "")
    raw = farm().redis.hgetall(keys.part(pid)) if ":" in pid else {}
    part = {k.decode(): v.decode() for k, v in raw.items()}
    if not part:
        raise not_found(f"part {pid}")
    if part.get("state") != "leased" or part.get("token") != token or not token:
        raise conflict(f"the lease on part {pid} is stale or missing; the part is {part.get('state')}",
                       "stale_lease")
    return part


@bp.get("/parts/<pid>/scene")
@requires("worker")
def scene(pid: str):
    """The scene's files; with `urls` (signed, expiring) where the storage can sign, so the
    worker fetches them from storage rather than through a gateway."""
    f = farm()
    _leased(pid)
    job_id = keys.job_of_part(pid)
    job = jobs.load(f, job_id, None)
    files = jobs.manifest_of(f, job_id)
    out = {"main": job["main"], "files": files}
    urls = _signed_urls(f, set(files.values()))
    if urls:
        out["urls"] = urls
    return jsonify(out)


def _signed_urls(f, shas: set[str]) -> dict[str, str]:
    urls: dict[str, str] = {}
    try:
        for sha in sorted(shas):
            url = f.storage.signed_url(jobs.file_key(sha), f.settings.link_ttl_s)
            if url is None:
                return {}
            urls[sha] = url
    except StorageError as e:  # e.g. the IAM signing API is down: the gateway can still stream them
        log.warning("cannot sign scene file URLs: %s", e)
        return {}
    return urls


@bp.get("/parts/<pid>/files/<sha>")
@requires("worker")
def scene_file(pid: str, sha: str):
    f = farm()
    _leased(pid)
    if not f.redis.sismember(keys.files_held(keys.job_of_part(pid)), sha):
        raise not_found(f"file {sha} in this part's scene")
    key = jobs.file_key(sha)
    local = f.storage.local_path(key)
    if local is not None:
        return send_file(local, mimetype="application/octet-stream", conditional=False, etag=False)
    return current_app.response_class(_chunks(f.storage.open_read(key)), mimetype="application/octet-stream")


def _chunks(src):
    with src:
        while block := src.read(1024 * 1024):
            yield block


def _frames(part: dict[str, str]) -> list[int]:
    return list(range(int(part["start"]), int(part["start"]) + int(part["count"]) * int(part["step"]),
                      int(part["step"])))


def _check_zip(src: BinaryIO, frames: list[int], limit: int) -> None:
    """Spool a result to a temporary file (zipfile must seek) and check it."""
    with tempfile.NamedTemporaryFile(suffix=".zip") as tmp:
        uploads.drain(src, limit, copy_to=tmp)
        tmp.flush()
        archive.check_result(Path(tmp.name), frames)


@bp.put("/parts/<pid>/result")
@requires("worker")
def result(pid: str):
    f = farm()
    part = _leased(pid)
    key = archive.part_result_key(part["job"], int(part["index"]), part["token"])
    uploads.stream_to(f.storage, key, f.settings.max_upload_bytes)
    try:
        local = f.storage.local_path(key)
        if local is not None:
            archive.check_result(local, _frames(part))
        else:
            with f.storage.open_read(key) as src:
                _check_zip(src, _frames(part), f.settings.max_upload_bytes)
    except BaseException:
        f.storage.delete(key)
        raise
    return _complete(f, pid, part, key)


@bp.post("/parts/<pid>/result/upload")
@requires("worker")
def result_upload(pid: str):
    """Where to send the part's result directly: an upload URL and its id, or nulls where the
    storage does not take direct uploads (then PUT /v1/parts/{pid}/result streams through here)."""
    f, body = farm(), _body()
    part = _leased(pid)
    size = body.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise bad_request("size must be the result's size in bytes", "bad_size")
    if size > f.settings.max_upload_bytes:
        raise uploads.too_large(f.settings.max_upload_bytes)
    uid = uploads.new_upload_id()
    try:
        url = f.storage.upload_url(archive.part_upload_key(part["job"], int(part["index"]), part["token"], uid),
                                   size)
    except StorageError as e:
        log.warning("cannot open a direct upload for part %s: %s", pid, e)
        url = None
    return jsonify({"url": url, "id": uid if url else None})


@bp.post("/parts/<pid>/result")
@requires("worker")
def commit_result(pid: str):
    """Check a result sent to its upload URL, keep it, and count the part done."""
    f, body = farm(), _body()
    part = _leased(pid)
    src = archive.part_upload_key(part["job"], int(part["index"]), part["token"], uploads.upload_id(body))
    key = archive.part_result_key(part["job"], int(part["index"]), part["token"])
    try:
        f.storage.promote(src, key, lambda fh: _check_zip(fh, _frames(part), f.settings.max_upload_bytes))
    except ObjectMissing:
        raise ApiError(404, "no_upload", f"no finished upload of part {pid}'s result under this id: "
                                         "send it to its upload URL first") from None
    except ApiError:
        f.storage.delete(src)
        raise
    return _complete(f, pid, part, key)


def _complete(f, pid: str, part: dict[str, str], key: str):
    """Count a checked result stored under `key`; a stale lease or an ended job drops it."""
    try:
        res = f.scripts.complete(args=[pid, part["token"], key])
    except BaseException:
        f.storage.delete(key)
        raise
    if res[0] == b"stale":
        f.storage.delete(key)
        raise conflict(f"the lease on part {pid} went stale during the upload", "stale_lease")
    if res[0] == b"ended":
        f.storage.delete(key)
        raise conflict(f"the job of part {pid} is {res[1].decode()}", "job_ended")
    return jsonify({"ok": True, "job_status": res[1].decode()})


@bp.post("/parts/<pid>/failure")
@requires("worker")
def failure(pid: str):
    f, body = farm(), _body()
    part = _leased(pid)
    message = _text(body, "message", MAX_MESSAGE) or "the render failed without a message"
    deterministic = body.get("deterministic", False)
    if not isinstance(deterministic, bool):
        raise bad_request("deterministic must be true or false")
    f.redis.hset(keys.part(pid), "log_tail", _text(body, "log_tail", MAX_LOG_TAIL))
    s = f.settings
    res = f.scripts.fail(args=[pid, part["token"], message, "1" if deterministic else "0",
                               s.max_attempts, s.block_after])
    if res[0] == b"stale":
        raise conflict(f"the lease on part {pid} is stale", "stale_lease")
    return jsonify({"outcome": res[0].decode()})


@bp.post("/parts/<pid>/release")
@requires("worker")
def release(pid: str):
    f = farm()
    part = _leased(pid)
    res = f.scripts.release(args=[pid, part["token"]])
    if res[0] == b"stale":
        raise conflict(f"the lease on part {pid} is stale", "stale_lease")
    return jsonify({"outcome": res[0].decode()})
