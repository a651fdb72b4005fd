"""Endpoints for clients (the CLI and the Blender add-on): files and jobs."""
from __future__ import annotations

import logging

from flask import Blueprint, g, jsonify, redirect, request

from . import cleanup, jobs, scene_files, uploads
from .auth import requires
from .downloads import signed_archive_link
from .errors import ApiError, bad_request
from .farm import current_farm

bp = Blueprint("client", __name__, url_prefix="/v1")
log = logging.getLogger("framefarm.gateway.client")

MAX_HASHES_PER_QUERY = 20_000
# Opening an upload session is one call to the storage service per file: keep a request short.
MAX_UPLOADS_PER_QUERY = 100


def owner_filter():
    return None if g.identity.is_admin else g.identity.owner


@bp.post("/files/missing")
@requires("client")
def files_missing():
    body = request.get_json(silent=True)
    hashes = body.get("hashes") if isinstance(body, dict) else None
    if not isinstance(hashes, list) or len(hashes) > MAX_HASHES_PER_QUERY:
        raise bad_request(f"send {{\"hashes\": [...]}} with at most {MAX_HASHES_PER_QUERY} SHA-256 digests")
    hashes = [h if isinstance(h, str) else repr(h) for h in hashes]
    return jsonify({"missing": scene_files.missing(current_farm(), hashes)})


@bp.put("/files/<sha>")
@requires("client")
def upload_file(sha: str):
    done = scene_files.store_streamed(current_farm(), sha)
    if not done.stored:
        return jsonify({"sha256": sha, "stored": False}), 200
    return jsonify({"sha256": sha, "stored": True, "size": done.size}), 201


@bp.post("/files/uploads")
@requires("client")
def files_uploads():
    """Upload URLs for files the farm lacks, where the storage takes uploads directly;
    `uploads` is empty where it does not (then PUT /v1/files/{sha} streams through here)."""
    body = request.get_json(silent=True)
    files = body.get("files") if isinstance(body, dict) else None
    if not isinstance(files, dict) or not 0 < len(files) <= MAX_UPLOADS_PER_QUERY:
        raise bad_request(f'send {{"files": {{sha256: size, ...}}}} with 1 to {MAX_UPLOADS_PER_QUERY} files')
    out = scene_files.direct_targets(current_farm(), files)
    return jsonify({"direct": bool(out), "uploads": out})


@bp.post("/files/<sha>/commit")
@requires("client")
def commit_file(sha: str):
    """Check a direct upload (size and SHA-256, read back from storage) and keep it as the file."""
    scene_files.check_sha(sha)
    done = scene_files.commit_direct(current_farm(), sha, uploads.upload_id(request.get_json(silent=True)))
    return jsonify({"sha256": sha, "stored": done.stored, "size": done.size}), 201 if done.stored else 200


@bp.post("/jobs")
@requires("client")
def submit():
    f = current_farm()
    body = request.get_json(silent=True)
    job_id, created = jobs.create(f, g.identity.owner, body, request.headers.get("Idempotency-Key"))
    job = jobs.load(f, job_id, None)
    return jsonify(jobs.view(f, job)), 201 if created else 200


@bp.get("/jobs")
@requires("client")
def list_jobs():
    f = current_farm()
    return jsonify({"jobs": [jobs.view(f, j) for j in jobs.list_for(f, owner_filter())]})


@bp.get("/jobs/<job_id>")
@requires("client")
def get_job(job_id: str):
    """With ?wait=S&rev=R, answers as soon as the job's revision differs from R
    (a long-poll: clients learn of progress at once without hammering)."""
    f = current_farm()
    job = jobs.load(f, job_id, owner_filter())
    wait = request.args.get("wait", type=float) or 0.0
    rev = request.args.get("rev", type=int)
    if wait > 0 and rev is not None:
        job = jobs.wait_for_change(f, job_id, rev, wait)
    out = jobs.view(f, job, with_parts=request.args.get("parts") == "1")
    if job["status"] == "done":
        out["download_url"] = signed_archive_link(f, job)
    return jsonify(out)


@bp.post("/jobs/<job_id>/cancel")
@requires("client")
def cancel(job_id: str):
    f = current_farm()
    job = jobs.load(f, job_id, owner_filter())
    jobs.cancel(f, job)
    return jsonify(jobs.view(f, jobs.load(f, job_id, None)))


@bp.get("/jobs/<job_id>/archive")
@requires("client")
def archive(job_id: str):
    f = current_farm()
    job = jobs.load(f, job_id, owner_filter())
    if job["status"] == "expired":
        raise cleanup.expired_error(job, f.settings)
    if job["status"] != "done":
        raise ApiError(409, "wrong_state", f"job {job_id} is {job['status']}; its archive is not ready")
    return redirect(signed_archive_link(f, job), code=302)
