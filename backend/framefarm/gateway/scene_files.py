"""Scene files: stored once each under their SHA-256, uploaded through a gateway or directly.

A client asks which of its files the farm lacks, then sends only those: streamed through
a gateway (`store_streamed`, the hash checked as the bytes pass), or, where the storage
hands out upload URLs, straight to storage (`direct_targets`), after which a gateway reads
them back and keeps them only if size and hash match (`commit_direct`).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from . import keys, uploads
from .errors import ApiError
from .farm import Farm
from .storage import ObjectMissing, StorageError

log = logging.getLogger("framefarm.gateway.scene_files")


def missing(farm: Farm, hashes: list[str]) -> list[str]:
    """The hashes (deduplicated, in order) the farm holds no file for."""
    wanted = dict.fromkeys(hashes)
    return [h for h in wanted if not farm.storage.exists(keys.scene_file(h))]


@dataclass(frozen=True)
class Stored:
    stored: bool  # False: the farm already held the file
    size: int | None


def store_streamed(farm: Farm, sha: str) -> Stored:
    """Keep the request body as the file `sha`, if its bytes hash to it."""
    limit = farm.settings.max_upload_bytes
    if farm.storage.exists(keys.scene_file(sha)):
        uploads.check_length(limit)
        return Stored(False, None)
    return Stored(True, uploads.stream_to(farm.storage, keys.scene_file(sha), limit, expect_sha=sha))


def direct_targets(farm: Farm, files: dict[str, int]) -> dict[str, dict[str, str]]:
    """sha -> {url, id} to upload each file straight to storage; empty where the storage
    takes no direct uploads (or cannot open them now: the gateway can still take the files).
    Each session is one call to the storage service, so the spec keeps a request to 100 files."""
    limit = farm.settings.max_upload_bytes
    if any(size > limit for size in files.values()):
        raise uploads.too_large(limit)
    out = {}
    try:
        for sha, size in files.items():
            uid = uploads.new_upload_id()
            url = farm.storage.upload_url(keys.incoming_file(sha, uid), size)
            if url is None:
                break
            out[sha] = {"url": url, "id": uid}
    except StorageError as e:
        log.warning("cannot open direct uploads: %s", e)
        out = {}
    return out


def commit_direct(farm: Farm, sha: str, upload_id: str) -> Stored:
    """Check a direct upload (size and SHA-256, read back from storage) and keep it as the file."""
    src = keys.incoming_file(sha, upload_id)
    tallies = []

    def verify(fh) -> None:
        tallies.append(uploads.drain(fh, farm.settings.max_upload_bytes))
        tallies[-1].check_sha(sha)

    try:
        stored = farm.storage.promote(src, keys.scene_file(sha), verify)
    except ObjectMissing:
        raise ApiError(404, "no_upload", f"no finished upload of {sha} under this id: send the file to its "
                                         "upload URL first (or ask for a new one)") from None
    except ApiError:
        farm.storage.delete(src)  # refused bytes are not kept
        raise
    return Stored(stored, tallies[-1].total)
