"""What a worker measured while rendering a part: the `_meta/` entries of its result zip.

Beside its frames, a part's result zip may carry (docs/architecture.md, *Result metadata*):
- `_meta/stats.json`: `{"frames": [{"frame": N, "seconds": S, "peak_rss_bytes": B}, ...],
  "load_seconds": S}`, each frame's render time and peak memory, and the time the scene took
  to load; read and checked here when the result is counted, and summed into the job's record
  (lua/complete.lua) for part sizing (parts.py), the claim's `seconds_per_frame` and metrics;
- `_meta/previews/<frame>.jpg`: small previews of the part's frames (the dashboard shows them).
Nothing else may live under `_meta/`, every name is one of these exact shapes (so none climbs
out of the folder), and the folder is small: the worker is not trusted, and these bytes are
read into memory. A result without `_meta/` (an older worker) is fine. The final zip leaves
`_meta/` out (archive.py).
"""
from __future__ import annotations

import json
import math
import re
import zipfile
from dataclasses import dataclass
from typing import Any

from .errors import ApiError, bad_request

META_DIR = "_meta/"
STATS_NAME = "_meta/stats.json"
_PREVIEW = re.compile(r"_meta/previews/(\d{1,9})\.jpg")
# Directory entries some zip tools write; they hold nothing.
_DIRS = frozenset({"_meta/", "_meta/previews/"})
MAX_META_BYTES = 2 * 1024 * 1024
MAX_PREVIEW_BYTES = 256 * 1024
# No render takes a year per frame, nor a machine more than a petabyte: past these, a number is a lie.
MAX_SECONDS = 365 * 24 * 3600.0
MAX_RSS_BYTES = 2**50


@dataclass(frozen=True)
class PartStats:
    """One result's measurements, summed as lua/complete.lua keeps them per job."""

    frames: int  # frames measured
    seconds: float  # their render time in all
    peak_rss_bytes: int  # the most memory one of them took (0: not reported)
    load_seconds: float

    def script_args(self) -> list[str]:
        """As lua/complete.lua takes them (repr keeps a float's every digit)."""
        return [str(self.frames), repr(self.seconds), str(self.peak_rss_bytes), repr(self.load_seconds)]


NO_STATS = PartStats(0, 0.0, 0, 0.0)


def is_meta(name: str) -> bool:
    return name.startswith(META_DIR)


def _bad(message: str) -> ApiError:
    return bad_request(f"the result's {message}", "bad_result")


def check_names(infos: list[zipfile.ZipInfo], frames: list[int]) -> None:
    """Refuse any `_meta/` entry that is not stats.json or a preview of one of the part's frames,
    and sizes past the folder's bounds as the zip declares them (the bytes read are counted
    again in `read`)."""
    wanted = set(frames)
    seen: set[str] = set()
    total = 0
    for info in infos:
        name = info.filename
        if name in seen:
            raise _bad(f"entry {name!r} appears twice")
        seen.add(name)
        if name in _DIRS:
            continue
        preview = _PREVIEW.fullmatch(name)
        if name != STATS_NAME and not preview:
            raise _bad(f"entry {name!r} is not one the farm knows under _meta/ "
                       f"(_meta/stats.json, _meta/previews/<frame>.jpg)")
        if preview and int(preview[1]) not in wanted:
            raise _bad(f"preview {name!r} is of a frame this part does not render")
        if preview and info.file_size > MAX_PREVIEW_BYTES:
            raise _bad(f"preview {name!r} declares {info.file_size} bytes, more than {MAX_PREVIEW_BYTES}")
        total += info.file_size
    if total > MAX_META_BYTES:
        raise _bad(f"_meta/ entries declare {total} bytes, more than {MAX_META_BYTES}")


def read(zf: zipfile.ZipFile, infos: list[zipfile.ZipInfo], frames: list[int]) -> PartStats:
    """Read every `_meta/` entry (counting the bytes it really unpacks to, which also checks its
    CRC) and the stats in it; NO_STATS when the result carries none."""
    total = 0
    stats = NO_STATS
    for info in infos:
        limit = MAX_PREVIEW_BYTES if _PREVIEW.fullmatch(info.filename) else MAX_META_BYTES
        data = bytearray()
        with zf.open(info) as fh:
            while block := fh.read(64 * 1024):
                data += block
                total += len(block)
                if len(data) > limit or total > MAX_META_BYTES:
                    raise _bad(f"_meta/ entries unpack past their bounds ({MAX_META_BYTES} bytes in all, "
                               f"{MAX_PREVIEW_BYTES} per preview)")
        if info.filename == STATS_NAME:
            stats = parse(bytes(data), frames)
    return stats


def _number(value: Any, what: str, top: float) -> float:
    # bool is an int to Python, and NaN or infinity would poison every sum they join.
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and 0 <= value <= top
    if not ok or not math.isfinite(value):  # `ok` first: a huge int cannot become a float
        raise _bad(f"_meta/stats.json: {what} must be a number from 0 to {top:g}, got {value!r}"[:300])
    return float(value)


def parse(data: bytes, frames: list[int]) -> PartStats:
    """The measurements in a stats.json, checked: each frame of the part at most once."""
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as e:
        raise _bad(f"_meta/stats.json is not JSON: {e}"[:300]) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("frames", []), list):
        raise _bad('_meta/stats.json must be an object {"frames": [...], "load_seconds": S}')
    wanted = set(frames)
    seen: set[int] = set()
    seconds, peak = 0.0, 0
    for entry in doc.get("frames", []):
        if not isinstance(entry, dict):
            raise _bad('_meta/stats.json: each of "frames" must be {"frame", "seconds", "peak_rss_bytes"}')
        frame = entry.get("frame")
        if isinstance(frame, bool) or not isinstance(frame, int) or frame not in wanted:
            raise _bad(f"_meta/stats.json names frame {frame!r}, which this part does not render"[:300])
        if frame in seen:
            raise _bad(f"_meta/stats.json names frame {frame} twice")
        seen.add(frame)
        seconds += _number(entry.get("seconds"), f"frame {frame}'s seconds", MAX_SECONDS)
        rss = entry.get("peak_rss_bytes", 0)
        peak = max(peak, int(_number(0 if rss is None else rss, f"frame {frame}'s peak_rss_bytes", MAX_RSS_BYTES)))
    load = doc.get("load_seconds", 0)
    return PartStats(len(seen), seconds, peak, _number(0 if load is None else load, "load_seconds", MAX_SECONDS))


@dataclass(frozen=True)
class JobStats:
    """What a job's counted results measured so far (the job record's `stat_*` fields)."""

    frames: int
    seconds: float
    peak_rss_bytes: int
    load_seconds: float
    parts: int  # results that carried stats

    @classmethod
    def of(cls, job: dict[str, str]) -> "JobStats":
        return cls(int(job.get("stat_frames", 0)), float(job.get("stat_seconds", 0)),
                   int(job.get("stat_peak_rss", 0)), float(job.get("stat_load_seconds", 0)),
                   int(job.get("stat_parts", 0)))

    @property
    def seconds_per_frame(self) -> float | None:
        """The mean render time of one frame; None until a frame was measured."""
        return self.seconds / self.frames if self.frames else None
