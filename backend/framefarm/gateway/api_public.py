"""Endpoints that need no token: health, the live gateway list, the API description, signed downloads."""
from __future__ import annotations

from importlib import resources

from flask import Blueprint, Response, current_app, jsonify, request, send_file, stream_with_context

from . import cleanup, gateways, jobs
from .archive import archive_key, download_name
from .errors import ApiError

bp = Blueprint("public", __name__)


def farm():
    return current_app.extensions["framefarm"]


@bp.get("/healthz")
def healthz():
    return jsonify({"ok": True})


@bp.get("/readyz")
def readyz():
    f = farm()
    problems = {}
    try:
        f.redis.ping()
    except Exception as e:  # any failure means "not ready"; the message says which
        problems["redis"] = str(e)
    try:
        f.storage.ping()
    except Exception as e:
        problems["storage"] = str(e)
    if problems:
        return jsonify({"ready": False, "problems": problems}), 503
    return jsonify({"ready": True})


@bp.get("/v1/gateways")
def list_gateways():
    return jsonify({"gateways": gateways.live(farm().redis, farm().settings.gateway_timeout_s)})


@bp.get("/v1/openapi.yaml")
def openapi():
    """The API's own description (kept in the package beside the code it describes)."""
    spec = resources.files("framefarm.gateway").joinpath("openapi.yaml").read_bytes()
    return Response(spec, mimetype="application/yaml")


@bp.get("/v1/download/<job_id>")
def download(job_id: str):
    f = farm()
    if not f.signer.verify(f"archive:{job_id}", request.args.get("expires"), request.args.get("sig")):
        raise ApiError(403, "bad_signature", "this download link is invalid or has expired; "
                       "ask the farm for a new one")
    job = jobs.load(f, job_id, owner=None)
    if job["status"] == "expired":
        raise cleanup.expired_error(job, f.settings)
    if job["status"] != "done":
        raise ApiError(409, "wrong_state", f"job {job_id} is {job['status']}")
    key = archive_key(job_id)
    name = download_name(job)
    local = f.storage.local_path(key)
    if local is not None:
        return send_file(local, mimetype="application/zip", as_attachment=True, download_name=name,
                         conditional=True, etag=True, max_age=0)
    src = f.storage.open_read(key)

    def chunks():
        with src:
            while block := src.read(1024 * 1024):
                yield block

    resp = Response(stream_with_context(chunks()), mimetype="application/zip")
    size = f.storage.size(key)
    if size is not None:
        resp.headers["Content-Length"] = str(size)
    resp.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    return resp
