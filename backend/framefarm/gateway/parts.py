"""A part as Redis stores it: its span (which frames it holds) and its state.

The split is computed once, by `frameset.split`, and written by `jobs.create`; from
then a part's frames are read back from its hash fields with `span_from`, into a
`PartSpan`, by every place that needs them (the claim answer, the result check, the
job's part list). A job without a chunk has its parts sized by time as claims take them
(`timed`).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis

from framefarm.common.frameset import PartSpan

from . import keys
from .config import Settings

# The hash fields of a span, in PartSpan's order (claim.lua returns them in this order too).
SPAN_FIELDS = ("index", "start", "count", "step")
ACTIVE = ("queued", "running")


def span_fields(span: PartSpan) -> list[int]:
    """How a span is written: index, start, count (the step is the job's)."""
    return [span.index, span.start, span.count]


def span_from(values: Sequence[Any]) -> PartSpan:
    """The span from its stored fields, in SPAN_FIELDS order."""
    index, start, count, step = (int(v) for v in values)
    return PartSpan(index, start, count, step)


def shown_state(state: str, job_status: str) -> str:
    """A part still 'queued' when its job ended was dropped with the job's queue (end_job
    in lua/_lib.lua does not touch every part): it reads as the job's status. An estimated job's
    parts after its samples are queued: they wait for it to be resumed (estimates.py)."""
    return job_status if state == "queued" and job_status not in (*ACTIVE, "estimated") else state


def part_list(r: redis.Redis, job_id: str, start: int, stop: int, job_status: str) -> list[dict]:
    """A page of the job view's `part_list`, parts `start` to `stop` (excluded): each part's
    span, state, attempts and last error."""
    pipe = r.pipeline()
    for i in range(start, stop):
        pipe.hmget(keys.part(keys.part_id(job_id, i)), *SPAN_FIELDS, "state", "attempts", "error")
    return [{**span_from(p[:4]).to_json(), "state": shown_state(p[4], job_status), "attempts": int(p[5] or 0),
             "error": p[6]} for p in pipe.execute()]


def timed(settings: Settings, frames_total: int, target_s: int | None) -> dict[str, int] | None:
    """The job fields of parts sized by time, for a job of `frames_total` frames without a chunk
    (None when the farm's and the job's target are off). Such a job is written as one part;
    each claim cuts the part it pops to the frames that fill `target_ms` at the job's measured
    time per frame (`carve` in lua/claim.lua; `first_frames` before anything is measured, never
    fewer than `min_frames`, which keeps the job within the farm's parts limit) and queues the
    rest as a new part. The job's `chunk` shows the first parts' size."""
    target = settings.target_part_seconds if target_s is None else target_s
    if target <= 0:
        return None
    first = max(1, settings.first_part_frames, -(-frames_total // settings.max_parts))
    return {"target_ms": target * 1000, "first_frames": first, "chunk": first,
            "min_frames": -(-frames_total // settings.max_parts)}
