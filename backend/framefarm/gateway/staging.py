"""Writing a job's parts without blocking Redis: staged in batches, then committed whole.

A job of 100,000 parts written in one Lua script would hold Redis for most of a second,
stalling every claim and heartbeat of the farm. So the parts go in batches, each one
short script (lua/stage_parts.lua), into the job's own queue while the job is *staged*:
no shared queue, no job record, so neither claims nor clients can see it. One last
O(log n) script (lua/commit_job.lua) records the job and puts it in its Blender
version's queue of jobs. A staging that is never committed (the submission was refused,
or its gateway died halfway) is discarded: by its writer at once, or by clean-up once
its deadline has passed (cleanup.discard_abandoned), so nothing is left behind.
"""
from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import redis

from framefarm.common.frameset import PartSpan

from . import keys, parts
from .errors import ApiError
from .farm import Farm

log = logging.getLogger("framefarm.gateway.staging")

IDEMPOTENCY_TTL_S = 24 * 3600
# Parts written per script: a few ms of Redis time each (docs/benchmarks.md).
PARTS_PER_BATCH = 1000
# A staging not committed by then is discarded (writing 100,000 parts takes seconds).
STAGING_TTL_S = 300


@dataclass(frozen=True)
class JobRecord:
    """What commit_job.lua records about a job besides its parts."""

    job_id: str
    owner: str
    idem_key: str  # '' for none
    min_version: int
    priority: int
    manifest_json: str
    fields: dict[str, Any]


class StagingLost(ApiError):
    def __init__(self, job_id: str) -> None:
        super().__init__(503, "unavailable", f"recording job {job_id} took too long; submit it again")


def write(farm: Farm, job: JobRecord, step: int, spans: list[PartSpan], held: int = 0) -> tuple[str, bool]:
    """Stage the job, write its parts in batches, commit it. Returns (job id, created):
    with an idempotency key already used, the existing job and False, and nothing written.
    The last `held` parts go to the job's held parts instead of its queue (an estimate's
    frames after its samples: estimates.py), handed out once the job is resumed."""
    existing = _stage(farm, job)
    if existing is not None:
        return existing, False
    try:
        split = len(spans) - held
        for dest, some in ((keys.job_queue, spans[:split]), (keys.job_held, spans[split:])):
            for batch in _batches(some, PARTS_PER_BATCH):
                if not _stage_parts(farm, job.job_id, step, batch, dest(job.job_id)):
                    raise StagingLost(job.job_id)
        committed = _commit(farm, job, len(spans))
        if committed is None:
            raise StagingLost(job.job_id)
        if committed != job.job_id:
            discard(farm, job.job_id)  # another request with the same key committed first
        return committed, committed == job.job_id
    except BaseException:
        try:
            discard(farm, job.job_id)
        except redis.RedisError as e:  # clean-up discards it later (cleanup.discard_abandoned)
            log.warning("could not discard staged job %s: %s", job.job_id, e)
        raise


def discard(farm: Farm, job_id: str) -> None:
    """Delete a staged job's parts, a batch per script; a committed job is left alone."""
    while _discard_batch(farm, job_id):
        pass


def _stage(farm: Farm, job: JobRecord) -> str | None:
    """lua/stage_job.lua: None once staged; the existing job's id if the idempotency key is taken."""
    res = farm.scripts.stage_job(args=[job.job_id, job.idem_key, STAGING_TTL_S * 1000])
    return res[1] if res[0] == "exists" else None


def _stage_parts(farm: Farm, job_id: str, step: int, spans: list[PartSpan], dest: str) -> bool:
    """lua/stage_parts.lua: False when the staging is gone (past its deadline, or discarded)."""
    flat = [x for span in spans for x in parts.span_fields(span)]
    return bool(farm.scripts.stage_parts(keys=[dest], args=[job_id, step, *flat]))


def _commit(farm: Farm, job: JobRecord, parts_total: int) -> str | None:
    """lua/commit_job.lua: the id of the job the submission stands for (this one, or the one
    that took its idempotency key first), or None when the staging is gone."""
    flat_fields = [str(x) for kv in job.fields.items() for x in kv]
    res = farm.scripts.commit_job(args=[
        job.job_id, job.owner, job.idem_key, IDEMPOTENCY_TTL_S, job.min_version, job.priority, parts_total,
        job.manifest_json, *flat_fields])
    return None if res[0] == "gone" else res[1]


def _discard_batch(farm: Farm, job_id: str) -> int:
    """lua/discard_job.lua: how many staged parts are left."""
    return int(farm.scripts.discard_job(args=[job_id, PARTS_PER_BATCH]))


def _batches(items: list, size: int) -> Iterator[list]:
    it = iter(items)
    while batch := list(itertools.islice(it, size)):
        yield batch
