"""The worker's scene cache: files by SHA-256, scenes as folders of hard links.

A scene's files are fetched once per hash, verified against it, and shared by
every job that uses them, so re-rendering a scene downloads nothing.

Sharing is only safe if nothing can change a cached file. Blender sees its scene
folder read-only in the sandbox (sandbox.py), but a worker may run without one, and a
root worker ignores file modes; so the cache also checks itself. After a file's hash is
verified, its size, modification and change times and inode are recorded; every use
compares them with the file's current ones (one `stat`), and a file that differs is
hashed again and, if its bytes changed, dropped and fetched anew. The change time
(ctime) cannot be set from user space, so a file cannot be altered and then made to look
untouched. A scene folder handed out again is checked the same way, entry by entry.
"""
from __future__ import annotations

import errno
import functools
import logging
import os
import shutil
import threading
from pathlib import Path
from typing import Callable

from framefarm.common.hashing import sha256_file

log = logging.getLogger("framefarm.worker")

# OS errors that every worker would meet with this manifest: retrying elsewhere cannot help.
_NAME_ERRORS = {errno.ENAMETOOLONG, errno.EINVAL, errno.EILSEQ, errno.ENOTDIR, errno.EISDIR, errno.EEXIST}

Stamp = tuple[int, int, int, int, int]  # size, mtime_ns, ctime_ns, inode, device


class CacheError(RuntimeError):
    """A scene could not be made ready. `deterministic`: the manifest itself is the
    problem (a name this disk cannot hold), so another try or worker cannot help."""

    def __init__(self, message: str, deterministic: bool = False) -> None:
        super().__init__(message)
        self.deterministic = deterministic


def _stamp(path: Path) -> Stamp:
    st = os.stat(path, follow_symlinks=False)
    return st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev


class SceneCache:
    def __init__(self, root: Path, keep_scenes: int = 8) -> None:
        self.files = root / "files"
        self.scenes = root / "scenes"
        self.files.mkdir(parents=True, exist_ok=True)
        self.scenes.mkdir(parents=True, exist_ok=True)
        self.keep_scenes = keep_scenes
        # Re-entrant: `scene` evicts old folders while it holds the lock, and `_evict` takes it too
        # (a plain Lock hung the worker on its ninth scene, keep_scenes + 1).
        self._lock = threading.RLock()
        self._verified: dict[Path, Stamp] = {}  # path -> its stamp when its hash last matched

    def file(self, sha: str, fetch: Callable[[Path], None]) -> Path:
        """The cached file for `sha`, fetching it with `fetch(dest)` if needed, or again if
        the cached copy's bytes changed since they were verified."""
        target = self.files / sha
        if self._intact(target, sha):
            return target
        target.unlink(missing_ok=True)  # absent, or changed: fetched again below
        tmp = self.files / f".{sha}.{threading.get_ident()}.tmp"
        try:
            fetch(tmp)
            actual = sha256_file(tmp)
            if actual != sha:
                raise CacheError(f"downloaded file hashes to {actual}, expected {sha}")
            tmp.chmod(0o444)  # a guard for workers that are not root; root relies on the checks
            os.replace(tmp, target)
            self._remember(target)
        finally:
            tmp.unlink(missing_ok=True)
        return target

    def _intact(self, path: Path, sha: str) -> bool:
        """Whether `path` holds the bytes hashing to `sha`: free when it has not been
        touched since it was verified, else hashed again."""
        try:
            stamp = _stamp(path)
        except OSError:  # absent, or a name this file system cannot hold
            return False
        with self._lock:
            if self._verified.get(path) == stamp:
                return True
        if sha256_file(path) != sha:
            log.warning("cached file %s changed since it was verified: dropped", path)
            with self._lock:
                self._verified.pop(path, None)
            return False
        self._remember(path)
        return True

    def _remember(self, path: Path) -> None:
        with self._lock:
            self._verified[path] = _stamp(path)

    def scene(self, key: str, files: dict[str, str], fetch: Callable[[str, Path], None]) -> Path:
        """A folder holding the scene's files at their relative paths, each verified."""
        folder = self.scenes / key
        with self._lock:
            complete = (folder / ".complete").exists()
        if complete and all(self._intact(folder / rel, sha) for rel, sha in files.items()):
            os.utime(folder)
            return folder
        building = self.scenes / f".{key}.{threading.get_ident()}"
        shutil.rmtree(building, ignore_errors=True)
        try:
            self._build(building, files, fetch)
        except BaseException:
            shutil.rmtree(building, ignore_errors=True)  # never a stale half-built folder
            raise
        with self._lock:
            if (folder / ".complete").exists() and not complete:
                # Another slot built the same scene meanwhile: that one serves both.
                shutil.rmtree(building, ignore_errors=True)
            else:  # a new folder, or one whose files failed their check
                shutil.rmtree(folder, ignore_errors=True)
                os.replace(building, folder)
            self._evict()
        return folder

    def _build(self, building: Path, files: dict[str, str], fetch: Callable[[str, Path], None]) -> None:
        for rel, sha in files.items():
            try:
                self._place(building, rel, sha, fetch)
            except OSError as exc:
                raise self._os_error(exc, rel) from None
        (building / ".complete").touch()

    def _place(self, building: Path, rel: str, sha: str, fetch: Callable[[str, Path], None]) -> None:
        src = self.file(sha, functools.partial(fetch, sha))
        dest = (building / rel).resolve()
        if building.resolve() not in dest.parents:
            raise CacheError(f"refusing scene path {rel!r} outside the scene folder", deterministic=True)
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, dest)
            self._remember(src)  # a new link changes the file's ctime, not its bytes
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            shutil.copyfile(src, dest)  # another filesystem: a copy, checked like a link
            dest.chmod(0o444)
        self._remember(dest)

    @staticmethod
    def _os_error(exc: OSError, rel: str) -> CacheError:
        """A readable reason for an OS error met while placing the scene's file `rel`."""
        shown = rel if len(rel) <= 60 else f"{rel[:40]}...{rel[-12:]} ({len(rel)} characters)"
        if exc.errno == errno.ENAMETOOLONG:
            return CacheError(f"the scene's file name {shown} is too long for this worker's file system",
                              deterministic=True)
        reason = exc.strerror or str(exc)
        return CacheError(f"cannot place the scene's file {shown}: {reason}",
                          deterministic=exc.errno in _NAME_ERRORS)

    def _evict(self) -> None:
        scenes = sorted((p for p in self.scenes.iterdir() if not p.name.startswith(".")),
                        key=lambda p: p.stat().st_mtime, reverse=True)
        for old in scenes[self.keep_scenes:]:
            shutil.rmtree(old, ignore_errors=True)
            prefix = old.resolve()
            with self._lock:
                for path in [p for p in self._verified if prefix in p.parents]:
                    del self._verified[path]
