"""The worker's scene cache: files by SHA-256, scenes as folders of hard links.

A scene's files are fetched once per hash, verified against it, and shared by
every job that uses them, so re-rendering a scene downloads nothing.
"""
from __future__ import annotations

import functools
import os
import shutil
import threading
from pathlib import Path
from typing import Callable

from framefarm.common.hashing import sha256_file


class CacheError(RuntimeError):
    pass


class SceneCache:
    def __init__(self, root: Path, keep_scenes: int = 8) -> None:
        self.files = root / "files"
        self.scenes = root / "scenes"
        self.files.mkdir(parents=True, exist_ok=True)
        self.scenes.mkdir(parents=True, exist_ok=True)
        self.keep_scenes = keep_scenes
        self._lock = threading.Lock()

    def file(self, sha: str, fetch: Callable[[Path], None]) -> Path:
        """The cached file for `sha`, fetching it with `fetch(dest)` if needed."""
        target = self.files / sha
        if target.exists():
            return target
        tmp = self.files / f".{sha}.{threading.get_ident()}.tmp"
        try:
            fetch(tmp)
            actual = sha256_file(tmp)
            if actual != sha:
                raise CacheError(f"downloaded file hashes to {actual}, expected {sha}")
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        return target

    def scene(self, key: str, files: dict[str, str], fetch: Callable[[str, Path], None]) -> Path:
        """A folder holding the scene's files at their relative paths."""
        folder = self.scenes / key
        with self._lock:
            if (folder / ".complete").exists():
                os.utime(folder)
                return folder
        building = self.scenes / f".{key}.{threading.get_ident()}"
        shutil.rmtree(building, ignore_errors=True)
        for rel, sha in files.items():
            src = self.file(sha, functools.partial(fetch, sha))
            dest = (building / rel).resolve()
            if building.resolve() not in dest.parents:
                raise CacheError(f"refusing scene path {rel!r} outside the scene folder")
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(src, dest)
            except OSError:  # another filesystem: fall back to a copy
                shutil.copyfile(src, dest)
        (building / ".complete").touch()
        with self._lock:
            if (folder / ".complete").exists():
                shutil.rmtree(building, ignore_errors=True)
            else:
                shutil.rmtree(folder, ignore_errors=True)
                os.replace(building, folder)
            self._evict()
        return folder

    def _evict(self) -> None:
        scenes = sorted((p for p in self.scenes.iterdir() if not p.name.startswith(".")),
                        key=lambda p: p.stat().st_mtime, reverse=True)
        for old in scenes[self.keep_scenes:]:
            shutil.rmtree(old, ignore_errors=True)
