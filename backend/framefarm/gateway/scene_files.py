"""Scene files: stored once each under their SHA-256, uploaded through a gateway or directly.

A client asks which of its files the farm lacks, then sends only those: streamed through
a gateway (`store_streamed`, the hash checked as the bytes pass), or, where the storage
hands out upload URLs, straight to storage (`direct_targets`), after which a gateway reads
them back and keeps them only if size and hash match (`commit_direct`).

Files are shared by content, but knowing a hash is not owning a file: each file records
the owners (auth.Identity.owner) who uploaded its bytes, and a client may reference only
those (admins any). Uploading bytes the farm already stores still costs the upload, once
per owner: the gateway checks the bytes hash to the file and records the owner, but keeps
no second copy. Files stored before owners were recorded have none: for every client they
are missing until it uploads them once more, while jobs already running keep using them.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from . import keys, uploads
from .errors import ApiError
from .farm import Farm
from .storage import ObjectMissing, StorageError

log = logging.getLogger("framefarm.gateway.scene_files")


def missing(farm: Farm, owner: str | None, hashes: list[str]) -> list[str]:
    """The hashes (deduplicated, in order) that `owner` may not use yet: the farm holds no
    file for them, or nobody under this owner uploaded it (None: an admin, who may use any).
    A file stored for someone else is missing for you, exactly like one never uploaded."""
    wanted = list(dict.fromkeys(hashes))
    if owner is None:
        mine = [True] * len(wanted)
    else:
        pipe = farm.redis.pipeline(transaction=False)
        for h in wanted:
            pipe.sismember(keys.file_owners(h), owner)
        mine = pipe.execute()
    return [h for h, ok in zip(wanted, mine) if not ok or not farm.storage.exists(keys.scene_file(h))]


def _owned_by(farm: Farm, sha: str, owner: str) -> None:
    """Record that `owner` uploaded the bytes of `sha` (clean-up forgets it with the file)."""
    farm.redis.sadd(keys.file_owners(sha), owner)


@dataclass(frozen=True)
class Stored:
    stored: bool  # False: the farm already held the file (the bytes were checked, not kept again)
    size: int


def store_streamed(farm: Farm, sha: str, owner: str) -> Stored:
    """Keep the request body as the file `sha` for `owner`, if its bytes hash to it."""
    limit = farm.settings.max_upload_bytes
    key = keys.scene_file(sha)
    if farm.storage.exists(key):
        done = Stored(False, uploads.receive(limit, expect_sha=sha))
    else:
        done = Stored(True, uploads.stream_to(farm.storage, key, limit, expect_sha=sha))
    _owned_by(farm, sha, owner)
    return done


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


def commit_direct(farm: Farm, sha: str, upload_id: str, owner: str) -> Stored:
    """Check a direct upload (size and SHA-256, read back from storage) and keep it as the file
    for `owner`; where the farm held the file already, the checked upload is dropped."""
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
    _owned_by(farm, sha, owner)
    return Stored(stored, tallies[-1].total)
