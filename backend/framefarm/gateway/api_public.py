"""Endpoints that need no token: health, the live gateway list, the API description, signed downloads."""
from __future__ import annotations

from importlib import resources

from flask import Blueprint, Response, jsonify, request

from . import cleanup, gateways, jobs, keys, previews
from .downloads import archive_name, send_stored
from .finishing import movie_type
from .errors import ApiError
from .farm import current_farm

bp = Blueprint("public", __name__)


@bp.get("/healthz")
def healthz():
    return jsonify({"ok": True})


@bp.get("/readyz")
def readyz():
    problems = current_farm().problems()
    if problems:
        return jsonify({"ready": False, "problems": problems}), 503
    return jsonify({"ready": True})


@bp.get("/v1/gateways")
def list_gateways():
    return jsonify({"gateways": gateways.live(current_farm().redis, current_farm().settings.gateway_timeout_s)})


@bp.get("/v1/openapi.yaml")
def openapi():
    """The API's own description (kept in the package beside the code it describes)."""
    spec = resources.files("framefarm.gateway").joinpath("openapi.yaml").read_bytes()
    return Response(spec, mimetype="application/yaml")


def _signed_done_job(what: str, job_id: str) -> dict[str, str]:
    """The done job a signed link names (`what`: "archive" or "movie"); 403, 404, 409 or 410 else."""
    f = current_farm()
    if not f.signer.verify(f"{what}:{job_id}", request.args.get("expires"), request.args.get("sig")):
        raise ApiError(403, "bad_signature", "this download link is invalid or has expired; "
                       "ask the farm for a new one")
    job = jobs.load(f, job_id, owner=None)
    if job["status"] == "expired":
        raise cleanup.expired_error(job, f.settings)
    if job["status"] != "done":
        raise ApiError(409, "wrong_state", f"job {job_id} is {job['status']}")
    return job


@bp.get("/v1/download/<job_id>")
def download(job_id: str):
    job = _signed_done_job("archive", job_id)
    return send_stored(current_farm().storage, keys.archive(job_id), "application/zip",
                       download_name=archive_name(job), conditional=True)


@bp.get("/v1/download/<job_id>/movie")
def download_movie(job_id: str):
    job = _signed_done_job("movie", job_id)
    return send_stored(current_farm().storage, keys.movie(job_id), movie_type(job["movie"]),
                       download_name=job["movie"], conditional=True)


@bp.get("/v1/preview/<job_id>/<frame>")
def preview(job_id: str, frame: str):
    """One frame's preview through a signed, expiring link (a webhook's `thumbnail_url`): the
    signature covers the job and the frame, so a link opens no other frame or job."""
    f = current_farm()
    if not f.signer.verify(previews.subject(job_id, int(frame)), request.args.get("expires"),
                           request.args.get("sig")):
        raise ApiError(403, "bad_signature", "this preview link is invalid or has expired; "
                       "ask the farm for a new one")
    return previews.answer(f, jobs.load(f, job_id, owner=None), int(frame))
