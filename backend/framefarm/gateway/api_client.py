"""Endpoints for clients (the CLI and the Blender add-on): files and jobs."""
from __future__ import annotations

import logging

from flask import Blueprint, current_app, g, jsonify, redirect, request

from . import cleanup, job_actions, jobs, previews, quotas, scene_files
from .auth import requires
from .downloads import signed_archive_link, signed_movie_link
from .errors import ApiError
from .farm import current_farm

bp = Blueprint("client", __name__, url_prefix="/v1")
log = logging.getLogger("framefarm.gateway.client")


def _json() -> dict:
    """The request's JSON object, of the shape openapi.yaml describes (contract.py checked it)."""
    return request.get_json(silent=True) or {}


def owner_filter():
    return None if g.identity.is_admin else g.identity.owner


@bp.post("/files/missing")
@requires("client")
def files_missing():
    return jsonify({"missing": scene_files.missing(current_farm(), owner_filter(), _json()["hashes"])})


@bp.put("/files/<sha>")
@requires("client")
def upload_file(sha: str):
    done = scene_files.store_streamed(current_farm(), sha, g.identity.owner)
    return jsonify({"sha256": sha, "stored": done.stored, "size": done.size}), 201 if done.stored else 200


@bp.post("/files/uploads")
@requires("client")
def files_uploads():
    """Upload URLs for files the farm lacks, where the storage takes uploads directly;
    `uploads` is empty where it does not (then PUT /v1/files/{sha} streams through here)."""
    out = scene_files.direct_targets(current_farm(), _json()["files"])
    return jsonify({"direct": bool(out), "uploads": out})


@bp.post("/files/<sha>/commit")
@requires("client")
def commit_file(sha: str):
    """Check a direct upload (size and SHA-256, read back from storage) and keep it as the file."""
    done = scene_files.commit_direct(current_farm(), sha, _json()["id"], g.identity.owner)
    return jsonify({"sha256": sha, "stored": done.stored, "size": done.size}), 201 if done.stored else 200


@bp.post("/jobs")
@requires("client")
def submit():
    f = current_farm()
    job_request = jobs.JobRequest.from_body(_json(), f.settings.max_frames)
    quotas.check_priority(f.settings, job_request.priority, g.identity)
    job_id, created = jobs.create(f, g.identity.owner, job_request, request.headers.get("Idempotency-Key"),
                                  any_file=g.identity.is_admin)
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
        job = jobs.wait_for_change(f, job_id, rev, wait, current_app.extensions["framefarm.waiters"],
                                   g.identity.owner)
    paged = request.args.get("parts") == "1"
    out = jobs.view(f, job, parts_from=request.args.get("parts_from", 0, type=int) if paged else None)
    if job["status"] == "done":
        out["download_url"] = signed_archive_link(f, job)
        if job.get("movie"):
            out["movie_url"] = signed_movie_link(f, job)
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


@bp.get("/jobs/<job_id>/previews")
@requires("client")
def list_previews(job_id: str):
    """The frames that have a small JPEG preview so far (the add-on's strip and flipbook).
    `fps` is null: the gateway does not know the scene's frame rate (the client does)."""
    f = current_farm()
    job = jobs.load(f, job_id, owner_filter())
    return jsonify({"frames": sorted(previews.frames(f, job)), "fps": None})


@bp.get("/jobs/<job_id>/previews/<frame>")
@requires("client")
def get_preview(job_id: str, frame: str):
    f = current_farm()
    return previews.answer(f, jobs.load(f, job_id, owner_filter()), int(frame))  # an integer: contract.py



# A job's actions besides cancel (job_actions.py), each POST /v1/jobs/{job_id}/<action>.
_ACTIONS = {
    "pause": job_actions.pause,
    "resume": job_actions.resume,
    "retry": job_actions.retry,
    "priority": lambda f, job: job_actions.set_priority(f, job, _json()["priority"], g.identity),
}


@requires("client")
def job_action(job_id: str):
    """Act on the caller's job (another client's: 404) and answer the job as it is now."""
    f = current_farm()
    job = jobs.load(f, job_id, owner_filter())
    _ACTIONS[request.path.rsplit("/", 1)[1]](f, job)
    return jsonify(jobs.view(f, jobs.load(f, job_id, None)))


for _action in _ACTIONS:
    bp.add_url_rule(f"/jobs/<job_id>/{_action}", f"job_{_action}", job_action, methods=["POST"])
