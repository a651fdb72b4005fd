"""Endpoints for clients (the CLI and the Blender add-on): files and jobs."""
from __future__ import annotations

import logging
import time

from flask import Blueprint, g, jsonify, redirect, request

from . import cleanup, jobs, keys, uploads
from .auth import requires
from .downloads import signed_archive_link
from .errors import ApiError, bad_request
from .farm import current_farm
from .storage import ObjectMissing, StorageError

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
    f = current_farm()
    wanted = dict.fromkeys(jobs.check_sha(h if isinstance(h, str) else repr(h)) for h in hashes)
    missing = [h for h in wanted if not f.storage.exists(keys.scene_file(h))]
    return jsonify({"missing": missing})


@bp.put("/files/<sha>")
@requires("client")
def upload_file(sha: str):
    f = current_farm()
    jobs.check_sha(sha)
    if f.storage.exists(keys.scene_file(sha)):
        uploads.check_length(f.settings.max_upload_bytes)
        return jsonify({"sha256": sha, "stored": False}), 200
    size = uploads.stream_to(f.storage, keys.scene_file(sha), f.settings.max_upload_bytes, expect_sha=sha)
    return jsonify({"sha256": sha, "stored": True, "size": size}), 201


@bp.post("/files/uploads")
@requires("client")
def files_uploads():
    """Upload URLs for files the farm lacks, where the storage takes uploads directly;
    `uploads` is empty where it does not (then PUT /v1/files/{sha} streams through here)."""
    f = current_farm()
    body = request.get_json(silent=True)
    files = body.get("files") if isinstance(body, dict) else None
    if not isinstance(files, dict) or not 0 < len(files) <= MAX_UPLOADS_PER_QUERY:
        raise bad_request(f'send {{"files": {{sha256: size, ...}}}} with 1 to {MAX_UPLOADS_PER_QUERY} files')
    limit = f.settings.max_upload_bytes
    for sha, size in files.items():
        jobs.check_sha(sha)
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise bad_request(f"the size of {sha} must be a whole number of bytes", "bad_size")
        if size > limit:
            raise uploads.too_large(limit)
    out = {}
    try:
        for sha, size in files.items():
            uid = uploads.new_upload_id()
            url = f.storage.upload_url(keys.incoming_file(sha, uid), size)
            if url is None:
                break
            out[sha] = {"url": url, "id": uid}
    except StorageError as e:  # the gateway can still take the files itself
        log.warning("cannot open direct uploads: %s", e)
        out = {}
    return jsonify({"direct": bool(out), "uploads": out})


@bp.post("/files/<sha>/commit")
@requires("client")
def commit_file(sha: str):
    """Check a direct upload (size and SHA-256, read back from storage) and keep it as the file."""
    f = current_farm()
    jobs.check_sha(sha)
    src = keys.incoming_file(sha, uploads.upload_id(request.get_json(silent=True)))
    tallies = []

    def verify(fh) -> None:
        tallies.append(uploads.drain(fh, f.settings.max_upload_bytes))
        tallies[-1].check_sha(sha)

    try:
        stored = f.storage.promote(src, keys.scene_file(sha), verify)
    except ObjectMissing:
        raise ApiError(404, "no_upload", f"no finished upload of {sha} under this id: send the file to its "
                                         "upload URL first (or ask for a new one)") from None
    except ApiError:
        f.storage.delete(src)  # refused bytes are not kept
        raise
    return jsonify({"sha256": sha, "stored": stored, "size": tallies[-1].total}), 201 if stored else 200


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
        deadline = time.monotonic() + min(wait, f.settings.job_wait_max_s)
        while True:
            gen = f.notifier.generation(f"job:{job_id}")
            job = jobs.load(f, job_id, None)
            left = deadline - time.monotonic()
            if int(job.get("rev", 0)) != rev or left <= 0 or f.notifier.closing:
                break
            f.notifier.wait(f"job:{job_id}", gen, min(left, 2.0))
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
