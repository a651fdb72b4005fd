"""Object storage behind one small interface: a local folder by default.

Keys are slash-separated names such as `files/<sha256>` or `parts/<job>/<part>.zip`.
Writers are all-or-nothing: an object appears under its key only when the write
completed, so a reader never sees half an upload, and a failed upload leaves nothing.
Every back end streams both ways, so no object is ever held in memory whole.

`open_storage` picks the back end from FRAMEFARM_STORAGE: `file:///path` (the
default, one machine) or `gs://bucket/prefix` (Google Cloud Storage, see
gcs_storage.py), which can also sign expiring URLs so big downloads bypass the
gateways; or several of them, one per kind of object (RoutedStorage).

Direct uploads: where a back end can hand out an upload URL (`upload_url`), clients and
workers send big files straight to storage. Those bytes come from outside, so they land
under a temporary key and `promote` moves them to their final key only after the farm
has read them back and checked them, pinned to exactly the bytes it checked.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, Protocol
from urllib.parse import urlparse

_KEY = re.compile(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.:-]+)*")


TEMP_PREFIX = ".part-"


class StorageError(RuntimeError):
    pass


class StorageUnavailable(StorageError):
    """The storage service did not answer (a network or service outage): retry later."""


class ObjectMissing(StorageError):
    """There is no object under the key (e.g. an upload that never completed)."""


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    updated: float  # seconds since the epoch when the object was last written


class Storage(Protocol):
    def exists(self, key: str) -> bool: ...
    def size(self, key: str) -> int | None: ...
    def open_read(self, key: str) -> BinaryIO: ...
    def writer(self, key: str) -> contextlib.AbstractContextManager[BinaryIO]: ...
    def delete(self, key: str) -> None: ...
    def delete_prefix(self, prefix: str) -> None: ...
    def list_prefix(self, prefix: str) -> Iterator[ObjectInfo]: ...
    def local_path(self, key: str) -> Path | None: ...

    def signed_url(self, key: str, ttl_s: int, method: str = "GET",
                   filename: str | None = None) -> str | None:
        """An expiring URL that grants `method` on this one object without a
        token, or None where the back end cannot sign (the gateway then streams)."""
        ...

    def upload_url(self, key: str, size: int) -> str | None:
        """A URL that takes one upload of `size` bytes to `key` without a token (it is the
        credential), or None where the back end cannot (uploads then stream through the gateway)."""
        ...

    def promote(self, src: str, dst: str, verify: Callable[[BinaryIO], None]) -> bool:
        """Move `src` to `dst` once `verify(reader)` has read it without raising; the bytes
        moved are exactly the bytes verified, even if `src` is written again meanwhile.
        False (and `src` deleted) when `dst` already exists; ObjectMissing without `src`;
        whatever `verify` raises leaves `src` in place."""
        ...

    def ping(self) -> None: ...


def _fsync(fd: int) -> None:
    """fsync, which under gunicorn's gevent worker (gunicorn_conf.py) runs on gevent's thread
    pool: gevent does not make it cooperative, and the wait would stall every request of the
    process, not only this one."""
    gevent_monkey = sys.modules.get("gevent.monkey")
    if gevent_monkey is not None and gevent_monkey.is_module_patched("socket"):
        import gevent  # type: ignore[import-untyped]  # gevent ships no type hints

        gevent.get_hub().threadpool.apply(os.fsync, (fd,))
    else:
        os.fsync(fd)


def check_key(key: str) -> str:
    # The whole key: with match() and `$`, "files/<sha>\n" passed and named a file with a newline.
    if not _KEY.fullmatch(key) or ".." in key.split("/"):
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
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=TEMP_PREFIX)
        try:
            with os.fdopen(fd, "wb") as fh:
                yield fh
                fh.flush()
                _fsync(fh.fileno())
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

    def list_prefix(self, prefix: str) -> Iterator[ObjectInfo]:
        """Objects under `prefix/`, in no particular order; writes in progress are not objects yet."""
        base = self._path(prefix)
        for dirpath, _dirs, names in os.walk(base):
            for name in names:
                if name.startswith(TEMP_PREFIX):
                    continue
                path = Path(dirpath) / name
                try:
                    st = path.stat()
                except FileNotFoundError:  # deleted while we walked
                    continue
                yield ObjectInfo(path.relative_to(self.root).as_posix(), st.st_size, st.st_mtime)

    def local_path(self, key: str) -> Path | None:
        return self._path(key)

    def signed_url(self, key: str, ttl_s: int, method: str = "GET", filename: str | None = None) -> str | None:
        return None

    def upload_url(self, key: str, size: int) -> str | None:
        return None

    def promote(self, src: str, dst: str, verify: Callable[[BinaryIO], None]) -> bool:
        # Renaming claims the file: a later write to `src` makes a new file, never this one.
        source, target = self._path(src), self._path(dst)
        claimed = source.with_name(f"{TEMP_PREFIX}{source.name}-{os.getpid()}-{threading.get_ident()}")
        try:
            os.rename(source, claimed)
        except FileNotFoundError:
            raise ObjectMissing(f"no object {src}") from None
        try:
            with open(claimed, "rb") as fh:
                verify(fh)
        except BaseException:
            with contextlib.suppress(FileExistsError):
                os.link(claimed, source)  # back where it was, unless written anew meanwhile
            claimed.unlink()
            raise
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(claimed, target)  # fails rather than replace an object that exists
            return True
        except FileExistsError:
            return False
        finally:
            claimed.unlink()

    def ping(self) -> None:
        if not os.access(self.root, os.W_OK):
            raise StorageError(f"storage folder {self.root} is not writable")


class RoutedStorage:
    """Objects kept in different places by kind (the key's first segment), so a studio can
    give scenes, parts and results their own buckets, access rules and retention."""

    def __init__(self, default: Storage, routes: dict[str, Storage]) -> None:
        self.default, self.routes = default, routes

    def _for(self, key: str) -> Storage:
        return self.routes.get(check_key(key).split("/", 1)[0], self.default)

    def exists(self, key: str) -> bool:
        return self._for(key).exists(key)

    def size(self, key: str) -> int | None:
        return self._for(key).size(key)

    def open_read(self, key: str) -> BinaryIO:
        return self._for(key).open_read(key)

    def writer(self, key: str) -> contextlib.AbstractContextManager[BinaryIO]:
        return self._for(key).writer(key)

    def delete(self, key: str) -> None:
        self._for(key).delete(key)

    def delete_prefix(self, prefix: str) -> None:
        self._for(prefix).delete_prefix(prefix)

    def list_prefix(self, prefix: str) -> Iterator[ObjectInfo]:
        return self._for(prefix).list_prefix(prefix)

    def local_path(self, key: str) -> Path | None:
        return self._for(key).local_path(key)

    def signed_url(self, key: str, ttl_s: int, method: str = "GET", filename: str | None = None) -> str | None:
        return self._for(key).signed_url(key, ttl_s, method, filename)

    def upload_url(self, key: str, size: int) -> str | None:
        return self._for(key).upload_url(key, size)

    def promote(self, src: str, dst: str, verify: Callable[[BinaryIO], None]) -> bool:
        store = self._for(src)
        if self._for(dst) is not store:
            raise StorageError(f"cannot move {src} to {dst}: they are kept in different places")
        return store.promote(src, dst, verify)

    def ping(self) -> None:
        for store in (self.default, *self.routes.values()):
            store.ping()


def open_storage(url: str) -> Storage:
    """`file:///abs/path`, `file://relative/path`, a plain path, or `gs://bucket[/prefix]`;
    or a comma-separated list of one of those (the default) and `KIND=URL` entries for
    the kinds kept elsewhere: `gs://farm/main,archives=gs://farm-results/main`."""
    if "," in url:
        default, routes = None, {}
        for entry in (e.strip() for e in url.split(",") if e.strip()):
            kind, sep, target = entry.partition("=")
            if sep and re.fullmatch(r"[a-z]+", kind) and kind not in routes:
                routes[kind] = open_storage(target)
            elif not sep and default is None:
                default = open_storage(entry)
            else:
                raise StorageError(f"bad storage entry {entry!r}: use one default URL and KIND=URL for the others")
        if default is None:
            raise StorageError(f"storage {url!r} names no default location")
        return RoutedStorage(default, routes)
    parsed = urlparse(url)
    if parsed.scheme in ("", "file"):
        path = url[len("file://"):] if url.startswith("file://") else url
        return LocalStorage(path)
    if parsed.scheme == "gs":
        from .gcs_storage import GCSStorage  # google-cloud-storage is only needed here

        return GCSStorage.from_url(url)
    raise StorageError(f"unsupported storage {url!r}: use file:///path or gs://bucket/prefix")
