"""Streaming request bodies into storage with a size limit and a running hash.

A request over the limit is refused from its Content-Length before a byte is
read; a chunked one is cut off as soon as it passes the limit.
"""
from __future__ import annotations

import hashlib

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


def stream_to(storage: Storage, key: str, limit: int, expect_sha: str | None = None) -> int:
    """Write the request body to `key`; with `expect_sha`, keep it only if it matches."""
    check_length(limit)
    digest = hashlib.sha256()
    total = 0
    stream = request.stream
    with storage.writer(key) as out:
        while block := stream.read(BLOCK):
            total += len(block)
            if total > limit:
                raise too_large(limit)
            digest.update(block)
            out.write(block)
        if request.content_length is not None and total != request.content_length:
            raise ApiError(400, "incomplete_upload",
                           f"received {total} of {request.content_length} bytes")
        if expect_sha is not None and digest.hexdigest() != expect_sha:
            raise ApiError(400, "hash_mismatch",
                           f"the uploaded bytes hash to {digest.hexdigest()}, not {expect_sha}")
    return total
