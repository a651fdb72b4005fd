"""A job's frame previews, wherever they are now: in its done parts' results while it renders,
in the job's own previews zip once it is assembled (dashboard/meta.py reads both).

One module for every way out: the dashboard's thumbnails, the client API's previews (the
add-on's strip and flipbook) and the signed link a webhook carries as its `thumbnail_url`.
They share one per-process `MetaCache`, so a result is opened once whoever asks.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import cast

from flask import Response

from . import keys
from .dashboard.meta import NOTHING, MetaCache
from .downloads import gateway_link
from .errors import ApiError
from .farm import Farm
from .parts import SPAN_FIELDS, span_from

cache = MetaCache()
PIPELINE_PARTS = 1000  # part hashes read per Redis round trip
LISTED_RESULTS = 100_000  # results whose frame numbers are kept (a few ints each)


class _Listed:
    """Which frames each stored result has a preview of. The list of a long job would otherwise
    open every result again once its previews' bytes outgrow the MetaCache, on each call (the
    add-on asks as each part lands); a result's frames are a few ints, kept for many more results."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: OrderedDict[str, tuple[int, ...]] = OrderedDict()

    def get(self, farm: Farm, result_key: str) -> tuple[int, ...]:
        with self._lock:
            got = self._items.get(result_key)
            if got is not None:
                self._items.move_to_end(result_key)
                return got
        meta = cache.get(farm, result_key)
        found = tuple(sorted(meta.previews))
        if meta is not NOTHING:  # unreadable now: ask again next time
            with self._lock:
                self._items[result_key] = found
                while len(self._items) > LISTED_RESULTS:
                    self._items.popitem(last=False)
        return found


_listed = _Listed()


def assembled(job: dict[str, str]) -> bool:
    """Whether the job's previews moved into its previews zip (its part results are gone)."""
    return job["status"] == "done"


def frames(farm: Farm, job: dict[str, str]) -> dict[int, int | None]:
    """Frame -> the index of the part whose result holds its preview (None: the previews zip),
    for every frame that has a preview now."""
    if assembled(job):
        return {f: None for f in _listed.get(farm, keys.previews(job["id"]))}
    found: dict[int, int | None] = {}
    total = int(job.get("parts_total") or 0)
    for start in range(0, total, PIPELINE_PARTS):
        pipe = farm.redis.pipeline()
        for i in range(start, min(total, start + PIPELINE_PARTS)):
            pipe.hmget(keys.part(keys.part_id(job["id"], i)), "index", "state", "result")
        for index, state, result in pipe.execute():
            if index is not None and state == "done" and result:
                found.update({f: int(index) for f in _listed.get(farm, result)})
    return found


def image(farm: Farm, job: dict[str, str], frame: int, part: int | None = None) -> bytes | None:
    """Frame `frame`'s JPEG preview, or None. `part`: the index of the part holding it, where the
    caller knows it (the dashboard's thumbnails); else the part is looked up by its span."""
    if assembled(job):
        return cache.get(farm, keys.previews(job["id"])).previews.get(frame)
    index = part if part is not None else _part_of(farm, job, frame)
    if index is None or index < 0:
        return None
    state, result = cast(list[str | None], farm.redis.hmget(keys.part(keys.part_id(job["id"], index)), "state",
                                                            "result"))
    return cache.get(farm, result).previews.get(frame) if state == "done" and result else None


def answer(farm: Farm, job: dict[str, str], frame: int, part: int | None = None) -> Response:
    """The preview as an image/jpeg answer; 404 `no_preview` where the frame has none (yet)."""
    data = image(farm, job, frame, part)
    if data is None:
        raise ApiError(404, "no_preview", f"frame {frame} of job {job['id']} has no preview (yet)")
    resp = Response(data, mimetype="image/jpeg")
    resp.headers["Cache-Control"] = "private, max-age=3600"  # a counted result never changes
    return resp


def _part_of(farm: Farm, job: dict[str, str], frame: int) -> int | None:
    """The done part whose span holds `frame` (parts never overlap; a timed job's carved parts neither)."""
    total = int(job.get("parts_total") or 0)
    for start in range(0, total, PIPELINE_PARTS):
        pipe = farm.redis.pipeline()
        for i in range(start, min(total, start + PIPELINE_PARTS)):
            pipe.hmget(keys.part(keys.part_id(job["id"], i)), *SPAN_FIELDS, "state")
        for values in pipe.execute():
            if values[0] is None or values[4] != "done":
                continue
            span = span_from(values[:4])
            if span.start <= frame <= span.end and (frame - span.start) % span.step == 0:
                return span.index
    return None


def subject(job_id: str, frame: int) -> str:
    """What a preview link's signature covers: this job's frame, nothing else."""
    return f"preview:{job_id}:{frame}"


def signed_link(farm: Farm, job_id: str, frame: int) -> str:
    """A signed, expiring link to one frame's preview (no token: a webhook's `thumbnail_url`)."""
    return gateway_link(farm, "public.preview", subject(job_id, frame), job_id=job_id, frame=str(frame))


def last_frame_link(farm: Farm, job: dict[str, str]) -> str | None:
    """The signed link to the preview of the job's last frame that has one; None when none has."""
    have = frames(farm, job)
    return signed_link(farm, job["id"], max(have)) if have else None
