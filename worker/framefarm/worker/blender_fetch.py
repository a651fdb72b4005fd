"""A worker with no Blender of its own runs the build the farm publishes (`--blender farm`).

The farm names one build (GET /v1/blender: version, SHA-256, an expiring link). The worker
downloads it into its cache, checks the SHA-256 before anything is unpacked (a build that
does not match is deleted and refused: it never runs), unpacks it with tarfile's `data`
filter (no paths outside the folder, no devices, no set-uid bits) and runs its `blender`.
A build already unpacked under its SHA-256 is used again without a download; older builds
are removed once a newer one is in place.
"""
from __future__ import annotations

import logging
import os
import shutil
import tarfile
from pathlib import Path

from framefarm.common.api import FarmAPI, download_url
from framefarm.common.hashing import sha256_file

log = logging.getLogger("framefarm.worker.blender")
COMPLETE = ".complete"


class BlenderFetchError(RuntimeError):
    pass


def fetch_pinned(api: FarmAPI, cache: Path) -> Path:
    """The `blender` executable of the farm's pinned build, fetched and unpacked if needed."""
    build = api.pinned_blender()
    sha = build["sha256"]
    folder = cache / sha
    if (folder / COMPLETE).exists():
        log.info("using the farm's Blender %s from %s", build["version"], folder)
        return executable(folder)
    cache.mkdir(parents=True, exist_ok=True)
    tarball = cache / f".{sha}.download"
    unpacking = cache / f".{sha}.unpacking"
    try:
        log.info("fetching the farm's Blender %s (%.1f MB)", build["version"], build["size"] / 1e6)
        download_url(build["url"], tarball, tls=api.client.tls)
        actual = sha256_file(tarball)
        if actual != sha:
            raise BlenderFetchError(
                f"the farm's Blender {build['version']} ({build['filename']}) does not match its SHA-256: "
                f"expected {sha}, got {actual}. Refusing to run it; an administrator should publish it "
                f"again with `framefarm blender publish`.")
        shutil.rmtree(unpacking, ignore_errors=True)
        try:
            with tarfile.open(tarball) as tar:
                tar.extractall(unpacking, filter="data")
        except (tarfile.TarError, OSError) as e:
            raise BlenderFetchError(f"the farm's Blender {build['version']} could not be unpacked: {e}") from e
        exe = executable(unpacking)
        (unpacking / COMPLETE).touch()
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(unpacking, folder)
    finally:
        tarball.unlink(missing_ok=True)
        shutil.rmtree(unpacking, ignore_errors=True)
    for old in cache.iterdir():
        if old.is_dir() and old.name != sha and not old.name.startswith("."):
            shutil.rmtree(old, ignore_errors=True)
    log.info("the farm's Blender %s is verified (sha256 %s) and unpacked in %s", build["version"], sha, folder)
    return folder / exe.relative_to(unpacking)


def executable(folder: Path) -> Path:
    """`blender` at the top of the build or in its one top-level folder (as Blender's own
    tarballs have it: blender-4.2.0-linux-x64/blender)."""
    for candidate in (folder / "blender", *sorted(folder.glob("*/blender"))):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise BlenderFetchError(f"the farm's Blender build has no executable `blender` at its top level ({folder})")
