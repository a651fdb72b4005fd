"""Content addresses: every file the farm stores or caches is named by its SHA-256."""
from __future__ import annotations

import hashlib
from pathlib import Path

HASH_BLOCK_SIZE = 1 << 20


def sha256_file(path: Path) -> str:
    """SHA-256 of a file read in 1 MiB blocks, so a huge cache file costs no memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while block := stream.read(HASH_BLOCK_SIZE):
            digest.update(block)
    return digest.hexdigest()
