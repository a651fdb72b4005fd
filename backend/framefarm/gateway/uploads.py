"""Uploads: request bodies streamed into storage, and direct uploads checked after the fact.

A request over the limit is refused from its Content-Length before a byte is
read; a chunked one is cut off as soon as it passes the limit.

A direct upload (where the storage hands out upload URLs, see storage.py) never passes
through a gateway: the uploader sends the bytes to a temporary key of its own, then asks
a gateway to commit it, and only bytes that pass the same checks as a streamed upload
(size, SHA-256 or result contents) are moved to the key the farm uses.
"""
from __future__ import annotations

import hashlib
import secrets
from typing import IO, BinaryIO, cast

from flask import request

from .errors import ApiError
from .storage import Storage

BLOCK = 1024 * 1024


def too_large(limit: int) -> ApiError:
    return ApiError(413, "too_large", f"the upload is larger than this farm's limit of {limit} bytes")


def check_length(limit: int) -> None:
    length = request.content_length
    if length is not None and length > limit:
        raise too_large(limit)


class Tally:
    """Counts and hashes bytes as they pass, refusing more than `limit` of them."""

    def __init__(self, limit: int) -> None:
        self.limit, self.total, self.digest = limit, 0, hashlib.sha256()

    def add(self, block: bytes) -> None:
        self.total += len(block)
        if self.total > self.limit:
            raise too_large(self.limit)
        self.digest.update(block)

    def check_sha(self, expect_sha: str) -> None:
        if self.digest.hexdigest() != expect_sha:
            raise ApiError(400, "hash_mismatch", f"the uploaded bytes hash to {self.digest.hexdigest()}, "
                                                 f"not {expect_sha}")


def receive(limit: int, expect_sha: str | None = None, out: IO[bytes] | None = None) -> int:
    """Read the whole request body (into `out`, if given); 400 unless all of it arrived
    and, with `expect_sha`, it hashes to that. Returns its size."""
    check_length(limit)
    tally = drain(cast(BinaryIO, request.stream), limit, copy_to=out)
    if request.content_length is not None and tally.total != request.content_length:
        raise ApiError(400, "incomplete_upload", f"received {tally.total} of {request.content_length} bytes")
    if expect_sha is not None:
        tally.check_sha(expect_sha)
    return tally.total


def stream_to(storage: Storage, key: str, limit: int, expect_sha: str | None = None) -> int:
    """Write the request body to `key`; with `expect_sha`, keep it only if it matches."""
    check_length(limit)  # before anything is written
    with storage.writer(key) as out:
        return receive(limit, expect_sha, out)


def drain(src: BinaryIO, limit: int, copy_to: IO[bytes] | None = None) -> Tally:
    """Read `src` to its end through a Tally (and into `copy_to`, if given)."""
    tally = Tally(limit)
    while block := src.read(BLOCK):
        tally.add(block)
        if copy_to is not None:
            copy_to.write(block)
    return tally


def new_upload_id() -> str:
    return secrets.token_hex(8)

