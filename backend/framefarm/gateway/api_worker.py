"""Endpoints for worker agents: register, claim, heartbeat, fetch scenes, report results.

Every call about a part carries its lease token (header X-Lease-Token). A token
that no longer fences the part (the lease expired and the part went to another
worker, or the job ended) is answered 409 and changes nothing.
"""
from __future__ import annotations

import logging
import re

from flask import Blueprint, current_app, g, jsonify, request

from . import jobs, keys, results, scheduling, uploads, workers
from .auth import requires
from .downloads import send_stored, storage_link
from .errors import ApiError, bad_request, not_found
from .farm import current_farm
from .storage import StorageError

bp = Blueprint("worker", __name__, url_prefix="/v1")
log = logging.getLogger("framefarm.gateway.worker")

MAX_MESSAGE = 4000
MAX_LOG_TAIL = 16000
_VERSION = re.compile(r"(\d{1,2})\.(\d{1,2})(\.|$)", re.ASCII)


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
    f, body = current_farm(), _body()
    version = parse_version(body.get("blender_version"))
    devices = body.get("devices", ["CPU"])
    if not isinstance(devices, list) or not all(isinstance(d, str) for d in devices):
        raise bad_request("devices must be a list of device names")
    slots = body.get("slots", 1)
    if not isinstance(slots, int) or isinstance(slots, bool) or not 1 <= slots <= 64:
        raise bad_request("slots must be a whole number from 1 to 64")
    name = _text(body, "name", 200) if "name" in body else None
    wid = workers.register(f, workers.Registration(
        name, version, _text(body, "blender", 100), _text(body, "device", 40, "CPU"), devices, slots,
        g.identity.owner))
    s = f.settings
    return jsonify({"id": wid, "heartbeat_s": s.heartbeat_s, "lease_s": s.lease_s,
                    "claim_wait_s": s.claim_wait_s}), 201


@bp.delete("/workers/<wid>")
@requires("worker")
def unregister(wid: str):
    f = current_farm()
    workers.load(f, wid, g.identity.owner)
    workers.unregister(f, wid)
    return jsonify({"ok": True})


@bp.post("/workers/<wid>/claim")
@requires("worker")
def claim(wid: str):
    f, body = current_farm(), _body()
    w = workers.load(f, wid, g.identity.owner)
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
        "id": lease.part_id, "job": job_id, "index": lease.span.index, "span": lease.span.to_json(),
        "frames": lease.span.frames(), "token": lease.token, "deadline_ms": lease.deadline_ms,
        "attempts": lease.attempts, "scene_hash": job["scene_hash"], "main": job["main"],
        "blender_version": int(job["blender_version"])}})


@bp.post("/workers/<wid>/heartbeat")
@requires("worker")
def heartbeat(wid: str):
    f, body = current_farm(), _body()
    workers.load(f, wid, g.identity.owner)
    held = body.get("parts", [])
    if not isinstance(held, list) or not all(
            isinstance(p, dict) and isinstance(p.get("id"), str) and isinstance(p.get("token"), str)
            for p in held):
        raise bad_request('parts must be a list of {"id": ..., "token": ...}')
    return jsonify({"abandon": workers.heartbeat(f, wid, [(p["id"], p["token"]) for p in held])})


def _leased(pid: str) -> results.LeasedPart:
    """The part, if the request's lease token still fences it; else 409."""
    return results.leased(current_farm(), pid, request.headers.get("X-Lease-Token", ""))


@bp.get("/parts/<pid>/scene")
@requires("worker")
def scene(pid: str):
    """The scene's files; with `urls` (signed, expiring) where the storage can sign, so the
    worker fetches them from storage rather than through a gateway."""
    f = current_farm()
    part = _leased(pid)
    job = jobs.load(f, part.job_id, None)
    files = jobs.manifest_of(f, part.job_id)
    out = {"main": job["main"], "files": files}
    urls = {sha: storage_link(f, keys.scene_file(sha)) for sha in sorted(set(files.values()))}
    if urls and all(urls.values()):
        out["urls"] = urls
    return jsonify(out)


@bp.get("/parts/<pid>/files/<sha>")
@requires("worker")
def scene_file(pid: str, sha: str):
    f = current_farm()
    part = _leased(pid)
    if not jobs.holds_file(f, part.job_id, sha):
        raise not_found(f"file {sha} in this part's scene")
    return send_stored(f.storage, keys.scene_file(sha), "application/octet-stream")


@bp.put("/parts/<pid>/result")
@requires("worker")
def result(pid: str):
    job_status = results.store_streamed(current_farm(), _leased(pid))
    return jsonify({"ok": True, "job_status": job_status})


@bp.post("/parts/<pid>/result/upload")
@requires("worker")
def result_upload(pid: str):
    """Where to send the part's result directly: an upload URL and its id, or nulls where the
    storage does not take direct uploads (then PUT /v1/parts/{pid}/result streams through here)."""
    f, body = current_farm(), _body()
    part = _leased(pid)
    size = body.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise bad_request("size must be the result's size in bytes", "bad_size")
    if size > f.settings.max_upload_bytes:
        raise uploads.too_large(f.settings.max_upload_bytes)
    uid = uploads.new_upload_id()
    try:
        url = results.upload_target(f, part, uid, size)
    except StorageError as e:
        log.warning("cannot open a direct upload for part %s: %s", pid, e)
        url = None
    return jsonify({"url": url, "id": uid if url else None})


@bp.post("/parts/<pid>/result")
@requires("worker")
def commit_result(pid: str):
    """Check a result sent to its upload URL, keep it, and count the part done."""
    f, body = current_farm(), _body()
    job_status = results.commit_uploaded(f, _leased(pid), uploads.upload_id(body))
    return jsonify({"ok": True, "job_status": job_status})


@bp.post("/parts/<pid>/failure")
@requires("worker")
def failure(pid: str):
    f, body = current_farm(), _body()
    part = _leased(pid)
    message = _text(body, "message", MAX_MESSAGE) or "the render failed without a message"
    deterministic = body.get("deterministic", False)
    if not isinstance(deterministic, bool):
        raise bad_request("deterministic must be true or false")
    outcome = results.fail(f, part, message, _text(body, "log_tail", MAX_LOG_TAIL), deterministic)
    return jsonify({"outcome": outcome})


@bp.post("/parts/<pid>/release")
@requires("worker")
def release(pid: str):
    return jsonify({"outcome": results.release(current_farm(), _leased(pid))})
