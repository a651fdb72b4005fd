"""The previews and frame times a part's result carries (`_meta/`, framestats.py), read for
the dashboard from the stored result while the job renders. The final zip leaves `_meta/`
out, and the part results are deleted once it is assembled, so the assembly hands every
`_meta/` entry to a `Keeper`, which writes the job's previews and frame times into one small
zip of their own (keys.previews: kept and deleted with the archive, cleanup.py).

Reading means opening the result zip (spooled to a temporary file where storage is remote),
so what one result holds is read once per gateway process and kept in a small LRU, bounded
in bytes: the results were checked when counted (at most 2 MiB of `_meta/` each), so a
worker cannot make this grow past its bound.
"""
from __future__ import annotations

import json
import re
import shutil
import tempfile
import threading
import zipfile
from collections import OrderedDict
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from .. import keys
from ..farm import Farm
from ..framestats import STATS_NAME
from ..storage import StorageError

_PREVIEW = re.compile(r"(?:_meta/previews/)?(\d{1,9})\.jpg")  # in a part's result; in a job's previews zip
_STATS = (STATS_NAME, "stats.json")
JPEG_MAGIC = b"\xff\xd8\xff"
CACHE_BYTES = 32 * 1024 * 1024


@dataclass
class PartMeta:
    previews: dict[int, bytes] = field(default_factory=dict)
    seconds: dict[int, float] = field(default_factory=dict)  # frame -> render seconds

    @property
    def size(self) -> int:
        return sum(len(b) for b in self.previews.values()) + 64 * len(self.seconds) + 64


NOTHING = PartMeta()


class MetaCache:
    def __init__(self, limit: int = CACHE_BYTES) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._items: OrderedDict[str, PartMeta] = OrderedDict()
        self._bytes = 0

    def get(self, farm: Farm, result_key: str) -> PartMeta:
        with self._lock:
            got = self._items.get(result_key)
            if got is not None:
                self._items.move_to_end(result_key)
                return got
        meta = read(farm, result_key)
        if meta is NOTHING:  # unreadable now (gone, or storage down): ask again next time
            return meta
        with self._lock:
            if result_key not in self._items:
                self._items[result_key] = meta
                self._bytes += meta.size
            while self._bytes > self.limit and self._items:
                _, old = self._items.popitem(last=False)
                self._bytes -= old.size
        return meta


def read(farm: Farm, result_key: str) -> PartMeta:
    """A result's previews (JPEG only: served as image/jpeg) and frame times; NOTHING when the
    result is gone (assembled) or unreadable."""
    try:
        with ExitStack() as stack:
            source: Path | IO[bytes] | None = farm.storage.local_path(result_key)
            if source is None:
                tmp = stack.enter_context(tempfile.TemporaryFile())
                with farm.storage.open_read(result_key) as src:
                    shutil.copyfileobj(src, tmp, 1024 * 1024)
                tmp.seek(0)
                source = tmp
            zf = stack.enter_context(zipfile.ZipFile(source))
            meta = PartMeta()
            for info in zf.infolist():
                m = _PREVIEW.fullmatch(info.filename)
                if m:
                    data = zf.read(info)
                    if data.startswith(JPEG_MAGIC):
                        meta.previews[int(m[1])] = data
                elif info.filename in _STATS:
                    meta.seconds = _seconds(zf.read(info))
            return meta
    except (OSError, StorageError, zipfile.BadZipFile, ValueError, RuntimeError):
        return NOTHING


class Keeper:
    """Collects a job's previews and frame times from its part results as the assembly copies
    them (archive.py), into the job's previews zip; written only if there was any."""

    def __init__(self, farm: Farm, job_id: str) -> None:
        self.farm, self.job_id = farm, job_id
        self.previews: dict[str, bytes] = {}
        self.seconds: dict[int, float] = {}

    def add(self, zin: zipfile.ZipFile, info: zipfile.ZipInfo) -> None:
        m = _PREVIEW.fullmatch(info.filename)
        if m:
            self.previews[f"{int(m[1])}.jpg"] = zin.read(info)  # bounded: the result was checked
        elif info.filename == STATS_NAME:
            self.seconds.update(_seconds(zin.read(info)))

    def write(self) -> None:
        if not self.previews and not self.seconds:
            return
        with self.farm.storage.writer(keys.previews(self.job_id)) as out, zipfile.ZipFile(out, "w") as zf:
            for name, data in self.previews.items():
                zf.writestr(name, data)
            frames = [{"frame": f, "seconds": s} for f, s in sorted(self.seconds.items())]
            zf.writestr("stats.json", json.dumps({"frames": frames}))


def _seconds(data: bytes) -> dict[int, float]:
    """Frame -> seconds from a stats.json already checked when its result was counted."""
    doc = json.loads(data)
    return {int(f["frame"]): float(f["seconds"]) for f in doc.get("frames", [])}
