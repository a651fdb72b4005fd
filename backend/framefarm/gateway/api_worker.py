"""Endpoints for worker agents: register, claim, heartbeat, fetch scenes, report results.

Every call about a part carries its lease token (header X-Lease-Token) and the id of
the worker holding it (X-Worker-Id). A lease is bound to the worker that claimed it and
a worker id to the token that registered it, so the call must show all three: another
token's worker id is answered 403, a token that no longer fences the part for this
worker (the lease expired and the part went to another worker, or the job ended) 409,
and neither changes anything.
"""
from __future__ import annotations

import logging
import re

from flask import Blueprint, current_app, g, jsonify, request

from . import archive, finishing, jobs, keys, longpoll, results, scheduling, uploads, workers
from .auth import requires
from .downloads import send_stored, storage_link
from .errors import ApiError, TooMany, not_found
from .farm import current_farm
from .storage import StorageError

bp = Blueprint("worker", __name__, url_prefix="/v1")
log = logging.getLogger("framefarm.gateway.worker")

MAX_MESSAGE = 4000
MAX_LOG_TAIL = 16000
CLIENT_GONE = "its connection closed while its claim waited"
WAITING_CLAIMS = "framefarm.waiting_claims"  # app.extensions: this process's workers.WaitingClaims
_VERSION = re.compile(r"(\d{1,2})\.(\d{1,2})(\.|\Z)", re.ASCII)


def _waiters() -> scheduling.Waiters:
    return current_app.extensions["framefarm.waiters"]


def _body() -> dict:
    """The request's JSON object, already checked against openapi.yaml (contract.py): an object
    of the described shape, or no body at all where the spec lets it be left out."""
    return request.get_json(silent=True) or {}


def parse_version(value: int | str) -> int:
    """304 or '3.4' or '3.4.1' -> 304 (the spec has let only these forms through)."""
    if isinstance(value, int):
        return value
    match = _VERSION.match(value)
    assert match is not None, value  # the spec's pattern is this one's
    return int(match[1]) * 100 + int(match[2])


def _text(body: dict, name: str, limit: int, default: str = "") -> str:
    """Free text cut to its limit (the spec lets long text through: the farm cuts it)."""
    value: str = body.get(name, default)
    return value[-limit:] if name == "log_tail" else value[:limit]


@bp.post("/workers")
@requires("worker")
def register():
    f, body = current_farm(), _body()
    name = _text(body, "name", 200) if "name" in body else None
    wid = workers.register(f, workers.Registration(
        name, parse_version(body["blender_version"]), _text(body, "blender", 100), _text(body, "device", 40, "CPU"),
        body.get("devices", ["CPU"]), body.get("slots", 1), g.identity.owner, body.get("sandbox", "unknown"),
        tuple(body.get("capabilities", ()))))
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
    with current_app.extensions[WAITING_CLAIMS].holding(wid, request.environ):  # its worker stays present
        got = scheduling.claim_for(f, wid, g.identity.owner, body.get("wait"), _waiters(), body.get("held", ()))
    if got is None:
        return "", 204
    if longpoll.client_gone(request.environ):
        # The worker went away while its claim waited: the part goes back to the queue now,
        # without counting an attempt, not after its lease runs out with nobody rendering it.
        lease = got.lease
        results.release(f, results.LeasedPart(lease.part_id, got.job_id, lease.token, wid, lease.span), CLIENT_GONE)
        log.info("claim of worker %s: its connection closed while it waited; part %s handed back",
                 wid, lease.part_id)
        return "", 204
    return jsonify({"part": _part(got, wid)})


def _part(got: scheduling.Claim, wid: str) -> dict:
    """A claim's part (openapi.yaml's Lease), as a claim answers it and a result's `next`."""
    lease = got.lease
    return {
        "id": lease.part_id, "job": got.job_id, "index": lease.span.index, "span": lease.span.to_json(),
        "frames": lease.span.frames(), "token": lease.token, "worker": wid, "deadline_ms": lease.deadline_ms,
        "attempts": lease.attempts, "scene_hash": got.scene_hash, "main": got.main,
        "blender_version": got.blender_version, "max_frame_seconds": got.max_frame_seconds,
        "format": got.output_format, "kind": got.kind, "seconds_per_frame": got.seconds_per_frame,
        "frames_left": got.frames_left,
        "finish": got.finish, "options": got.options, "piece": got.piece}


@bp.post("/workers/<wid>/heartbeat")
@requires("worker")
def heartbeat(wid: str):
    f, body = current_farm(), _body()
    workers.load(f, wid, g.identity.owner)
    held = body.get("parts", [])
    return jsonify({"abandon": workers.heartbeat(f, wid, [(p["id"], p["token"]) for p in held])})


def _leased(pid: str) -> results.LeasedPart:
    """The part, if the request's worker (registered by the request's token) holds its lease
    under the request's lease token; else 403, 404 or 409."""
    return results.leased(current_farm(), pid, request.headers.get("X-Lease-Token", ""),
                          request.headers.get("X-Worker-Id", ""), g.identity.owner)


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


@bp.get("/parts/<pid>/inputs")
@requires("worker")
def inputs(pid: str):
    """A leased finishing part's inputs: the job's frame parts, with signed links to their
    results where the storage signs them (finishing.py)."""
    f = current_farm()
    part = _leased(pid)
    job = jobs.load(f, part.job_id, None)
    return jsonify({"inputs": finishing.inputs(f, job, part.span.index, lambda key: storage_link(f, key))})


@bp.get("/parts/<pid>/inputs/<index>")
@requires("worker")
def input_result(pid: str, index: str):
    f = current_farm()
    part = _leased(pid)  # `index`: a whole number from 0, as openapi.yaml let through (contract.py)
    key = finishing.input_key(f, jobs.load(f, part.job_id, None), part.span.index, int(index))
    return send_stored(f.storage, key, "application/zip")


@bp.put("/parts/<pid>/result")
@requires("worker")
def result(pid: str):
    part = _leased(pid)
    return _counted(part, results.store_streamed(current_farm(), part))


def _counted(part: results.LeasedPart, job_status: str):
    """A counted result's answer; with `?next=S`, the worker's next claim too (waiting up to S
    seconds, the finished part's job held), so a result and the next part take one request."""
    out: dict = {"ok": True, "job_status": job_status}
    if job_status == "assembling":  # this result was the job's last: assemble now, not on the next tick
        current_app.extensions[archive.DUE].set()
    wait = request.args.get("next", type=float)
    if wait is None:
        return jsonify(out)
    held = [part.job_id, *(h for h in request.args.getlist("held") if h != part.job_id)]
    headers = {}
    try:
        got = scheduling.claim_for(current_farm(), part.worker_id, g.identity.owner, wait, _waiters(), held)
    except ApiError as e:
        # The result has counted: a next claim that cannot be made (the gateway holds all the
        # waiting claims it may, say) answers null, never an error the worker would take for
        # its result's; a 429's Retry-After still tells it when to claim again.
        log.info("no next claim with part %s's result: %s", part.id, e.message)
        got = None
        if isinstance(e, TooMany):
            headers["Retry-After"] = str(e.retry_after_s)
    out["next"] = _part(got, part.worker_id) if got else None
    return jsonify(out), 200, headers


@bp.post("/parts/<pid>/result/upload")
@requires("worker")
def result_upload(pid: str):
    """Where to send the part's result directly: an upload URL and its id, or nulls where the
    storage does not take direct uploads (then PUT /v1/parts/{pid}/result streams through here)."""
    f, body = current_farm(), _body()
    part = _leased(pid)
    size: int = body["size"]
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
    part = _leased(pid)
    return _counted(part, results.commit_uploaded(f, part, body["id"]))


@bp.post("/parts/<pid>/failure")
@requires("worker")
def failure(pid: str):
    f, body = current_farm(), _body()
    part = _leased(pid)
    message = _text(body, "message", MAX_MESSAGE) or "the render failed without a message"
    outcome = results.fail(f, part, message, _text(body, "log_tail", MAX_LOG_TAIL), body.get("deterministic", False))
    return jsonify({"outcome": outcome})


@bp.post("/parts/<pid>/release")
@requires("worker")
def release(pid: str):
    reason = _text(_body(), "reason", MAX_MESSAGE)
    return jsonify({"outcome": results.release(current_farm(), _leased(pid), reason)})
