"""Object storage behind one small interface: a local folder by default.

Keys are slash-separated names such as `files/<sha256>` or `parts/<job>/<part>.zip`.
Writers are all-or-nothing: an object appears under its key only when the write
completed, so a reader never sees half an upload, and a failed upload leaves nothing.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO, Iterator, Protocol
from urllib.parse import urlparse

_KEY = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.:-]+)*$")


class StorageError(RuntimeError):
    pass


class Storage(Protocol):
    def exists(self, key: str) -> bool: ...
    def size(self, key: str) -> int | None: ...
    def open_read(self, key: str) -> BinaryIO: ...
    def writer(self, key: str) -> contextlib.AbstractContextManager[BinaryIO]: ...
    def delete(self, key: str) -> None: ...
    def local_path(self, key: str) -> Path | None: ...
    def ping(self) -> None: ...


def check_key(key: str) -> str:
    if not _KEY.match(key) or ".." in key.split("/"):
        raise StorageError(f"invalid storage key {key!r}")
    return key


class LocalStorage:
    """Objects as files under one folder; temporary files live beside their target
    so the final rename is atomic on the same filesystem."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def size(self, key: str) -> int | None:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError:
            return None

    def open_read(self, key: str) -> BinaryIO:
        try:
            return open(self._path(key), "rb")
        except FileNotFoundError:
            raise StorageError(f"no object {key}") from None

    @contextlib.contextmanager
    def writer(self, key: str) -> Iterator[BinaryIO]:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".part-")
        try:
            with os.fdopen(fd, "wb") as fh:
                yield fh
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(key).unlink()

    def delete_prefix(self, prefix: str) -> None:
        shutil.rmtree(self._path(prefix), ignore_errors=True)

    def local_path(self, key: str) -> Path | None:
        return self._path(key)

    def ping(self) -> None:
        if not os.access(self.root, os.W_OK):
            raise StorageError(f"storage folder {self.root} is not writable")


def open_storage(url: str) -> Storage:
    """`file:///abs/path`, `file://relative/path` or a plain path."""
    parsed = urlparse(url)
    if parsed.scheme in ("", "file"):
        path = url[len("file://"):] if url.startswith("file://") else url
        return LocalStorage(path)
    raise StorageError(f"unsupported storage {url!r}: use file:///path")
