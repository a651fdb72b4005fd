"""The farm's pinned Blender: one build, published in storage, that workers without a Blender fetch.

`framefarm blender publish TARBALL --version X` streams the tarball into storage under
`blender/<sha256>/<name>` and records its version and SHA-256 in Redis, in that order, so a
worker is never pointed at a build that is not all there. Workers ask `GET /v1/blender`
and get the version, the SHA-256 and an expiring link (the storage's own signed URL where
it can sign one, else a gateway's); they check the SHA-256 before they unpack anything,
so a build corrupted in storage or on the way is refused, not run.

Publishing a new build replaces the pin and deletes the previous build's object.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
from pathlib import Path

from flask import Blueprint, jsonify, request

from . import keys
from .auth import requires
from .downloads import gateway_link, send_stored, storage_link
from .errors import ApiError
from .farm import current_farm
from .storage import Storage
from .uploads import BLOCK

bp = Blueprint("blender", __name__, url_prefix="/v1")
log = logging.getLogger("framefarm.gateway.blender")

_VERSION = re.compile(r"\d{1,2}\.\d{1,2}(\.\d{1,3})?")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def publish(r, storage: Storage, tarball: Path, version: str) -> dict[str, str]:
    """Store `tarball` as the farm's Blender `version`; returns what was recorded."""
    if not _VERSION.fullmatch(version):  # fullmatch: `$` lets a final newline through
        raise ValueError(f"--version must look like 4.2 or 4.2.1, not {version!r}")
    name = _UNSAFE.sub("_", tarball.name).lstrip(".") or "blender.tar"
    with open(tarball, "rb") as src:
        sha = hashlib.file_digest(src, "sha256").hexdigest()
        size = os.fstat(src.fileno()).st_size
        src.seek(0)
        key = keys.blender_build(sha, name)
        with storage.writer(key) as out:
            shutil.copyfileobj(src, out, BLOCK)
    previous = r.hget(keys.BLENDER, "key")
    if isinstance(previous, bytes):  # the CLI's client may not decode replies
        previous = previous.decode()
    record = {"version": version, "sha256": sha, "key": key, "size": str(size), "filename": name}
    r.hset(keys.BLENDER, mapping=record)
    if previous and previous != key:
        storage.delete(previous)
    return record


def pinned(r) -> dict[str, str] | None:
    return r.hgetall(keys.BLENDER) or None


@bp.get("/blender")
@requires("worker")
def show():
    f = current_farm()
    build = pinned(f.redis)
    if build is None:
        raise ApiError(404, "no_blender", "this farm has not published a Blender build: an administrator "
                                          "publishes one with `framefarm blender publish TARBALL --version X`")
    url = (storage_link(f, build["key"], build["filename"])
           or gateway_link(f, "blender.download", f"blender:{build['sha256']}", sha=build["sha256"]))
    return jsonify({"version": build["version"], "sha256": build["sha256"], "size": int(build["size"]),
                    "filename": build["filename"], "url": url})


@bp.get("/blender/<sha>")
def download(sha: str):
    """The pinned build through a gateway, for storage that cannot sign; the link is the credential."""
    f = current_farm()
    if not f.signer.verify(f"blender:{sha}", request.args.get("expires"), request.args.get("sig")):
        raise ApiError(403, "bad_signature", "this link is invalid or has expired; ask GET /v1/blender again")
    build = pinned(f.redis)
    if build is None or build["sha256"] != sha:
        raise ApiError(404, "not_found", "this Blender build is no longer the farm's: ask GET /v1/blender again")
    return send_stored(f.storage, build["key"], "application/octet-stream", download_name=build["filename"],
                       size=int(build["size"]))
