"""Endpoints for admins: the workers, and draining them (drain.py)."""
from __future__ import annotations

from flask import Blueprint, jsonify, request

from . import drain
from .auth import requires
from .farm import current_farm

bp = Blueprint("admin", __name__, url_prefix="/v1")


@bp.get("/workers")
@requires("admin")
def list_workers():
    return jsonify({"workers": drain.listing(current_farm())})


@bp.post("/workers/<wid>/drain")
@bp.post("/workers/<wid>/undrain")
@requires("admin")
def drain_worker(wid: str):
    """Drain the worker (it finishes its parts, takes no more) or undrain it; answer it as it is now."""
    f = current_farm()
    drain.set_drained(f, wid, request.path.endswith("/drain"))
    return jsonify(drain.view(f, wid))
