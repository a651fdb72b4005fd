"""Stored objects on their way out: signed, expiring links, and the bytes themselves.

A link goes straight to the storage service where it can sign one (the bytes then
bypass the gateways), else to a gateway route whose signature is the credential.
`send_stored` is the one way a view answers with a stored object: a local file by
sendfile, anything else streamed without holding it in memory.
"""
from __future__ import annotations

import logging
from typing import BinaryIO, Iterator

from flask import Response, current_app, has_request_context, send_file, stream_with_context, url_for

from . import keys
from .farm import Farm
from .storage import Storage, StorageError

log = logging.getLogger("framefarm.gateway.downloads")
BLOCK = 1024 * 1024


def archive_name(job: dict[str, str]) -> str:
    """The file name a browser saves a job's archive under."""
    return f"{job.get('name') or job['id']}-{job['id']}.zip".replace("/", "_").replace('"', "")


def storage_link(farm: Farm, key: str, filename: str | None = None) -> str | None:
    """The storage's own signed URL for `key`, or None where it cannot sign one (or its
    signing service is down: a gateway can still stream the object)."""
    try:
        return farm.storage.signed_url(key, farm.settings.link_ttl_s, filename=filename)
    except StorageError as e:
        log.warning("cannot sign a storage URL for %s: %s", key, e)
        return None


def gateway_link(farm: Farm, endpoint: str, subject: str, **values: str) -> str:
    """A signed, expiring link to a gateway route that checks `subject`'s signature."""
    expires, sig = farm.signer.sign(subject, farm.settings.link_ttl_s)
    # A path on the configured host (config.Settings.link_base), never on the request's Host header.
    if has_request_context():
        return farm.settings.link_base + url_for(endpoint, _external=False, expires=expires, sig=sig, **values)
    # Outside a request (a webhook's payload, built in the background): the app's routes alone.
    adapter = current_app.url_map.bind("", url_scheme="")
    return farm.settings.link_base + adapter.build(endpoint, {"expires": expires, "sig": sig, **values})


def signed_archive_link(farm: Farm, job: dict[str, str]) -> str:
    """A signed, expiring link to a done job's zip (the job view's `download_url`)."""
    return (storage_link(farm, keys.archive(job["id"]), archive_name(job))
            or gateway_link(farm, "public.download", f"archive:{job['id']}", job_id=job["id"]))


def signed_movie_link(farm: Farm, job: dict[str, str]) -> str:
    """A signed, expiring link to a done encode job's movie (the job view's `movie_url`)."""
    return (storage_link(farm, keys.movie(job["id"]), job["movie"])
            or gateway_link(farm, "public.download_movie", f"movie:{job['id']}", job_id=job["id"]))


def send_stored(storage: Storage, key: str, mimetype: str, *, download_name: str | None = None,
                size: int | None = None, conditional: bool = False) -> Response:
    """Answer with the object under `key`; with `download_name`, as an attachment.
    `conditional` answers Range and If-None-Match requests (local files only)."""
    local = storage.local_path(key)
    if local is not None:
        return send_file(local, mimetype=mimetype, as_attachment=download_name is not None,
                         download_name=download_name, conditional=conditional, etag=conditional, max_age=0)
    src = storage.open_read(key)
    resp = Response(stream_with_context(_chunks(src)), mimetype=mimetype)
    size = storage.size(key) if size is None else size
    if size is not None:
        resp.headers["Content-Length"] = str(size)
    if download_name is not None:
        resp.headers["Content-Disposition"] = f'attachment; filename="{download_name}"'
    return resp


def _chunks(src: BinaryIO) -> Iterator[bytes]:
    with src:
        while block := src.read(BLOCK):
            yield block
