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

from . import parts
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


def write(farm: Farm, job: JobRecord, step: int, spans: list[PartSpan]) -> tuple[str, bool]:
    """Stage the job, write its parts in batches, commit it. Returns (job id, created):
    with an idempotency key already used, the existing job and False, and nothing written."""
    res = farm.scripts.stage_job(args=[job.job_id, job.idem_key, STAGING_TTL_S * 1000])
    if res[0] == "exists":
        return res[1], False
    try:
        for batch in _batches(spans, PARTS_PER_BATCH):
            flat = [x for span in batch for x in parts.span_fields(span)]
            if not farm.scripts.stage_parts(args=[job.job_id, step, *flat]):
                raise StagingLost(job.job_id)
        flat_fields = [str(x) for kv in job.fields.items() for x in kv]
        res = farm.scripts.commit_job(args=[
            job.job_id, job.owner, job.idem_key, IDEMPOTENCY_TTL_S, job.min_version, job.priority, len(spans),
            job.manifest_json, *flat_fields])
        if res[0] == "created":
            return job.job_id, True
        if res[0] == "gone":
            raise StagingLost(job.job_id)
        discard(farm, job.job_id)  # another request with the same key committed first
        return res[1], False
    except BaseException:
        try:
            discard(farm, job.job_id)
        except redis.RedisError as e:  # clean-up discards it later (cleanup.discard_abandoned)
            log.warning("could not discard staged job %s: %s", job.job_id, e)
        raise


def discard(farm: Farm, job_id: str) -> None:
    """Delete a staged job's parts, a batch per script; a committed job is left alone."""
    while farm.scripts.discard_job(args=[job_id, PARTS_PER_BATCH]):
        pass


def _batches(items: list, size: int) -> Iterator[list]:
    it = iter(items)
    while batch := list(itertools.islice(it, size)):
        yield batch


