"""A part as Redis stores it: its span (which frames it holds) and its state.

The split is computed once, by `frameset.split`, and written by `jobs.create`; from
then a part's frames are read back from its hash fields with `span_from`, into a
`PartSpan`, by every place that needs them (the claim answer, the result check, the
job's part list).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis

from framefarm.common.frameset import PartSpan

from . import keys

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
    in lua/_lib.lua does not touch every part): it reads as the job's status."""
    return job_status if state == "queued" and job_status not in ACTIVE else state


def part_list(r: redis.Redis, job_id: str, start: int, stop: int, job_status: str) -> list[dict]:
    """A page of the job view's `part_list`, parts `start` to `stop` (excluded): each part's
    span, state, attempts and last error."""
    pipe = r.pipeline()
    for i in range(start, stop):
        pipe.hmget(keys.part(keys.part_id(job_id, i)), *SPAN_FIELDS, "state", "attempts", "error")
    return [{**span_from(p[:4]).to_json(), "state": shown_state(p[4], job_status), "attempts": int(p[5] or 0),
             "error": p[6]} for p in pipe.execute()]
