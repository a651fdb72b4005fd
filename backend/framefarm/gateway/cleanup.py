"""Clean-up: what the farm stores is deleted as soon as nothing needs it.

- Part results are deleted by the assembly once the final zip is written (archive.py);
  the parts a failed or cancelled job left behind are deleted here when it ends.
- Scene files (`files/<sha>`) are shared by content hash, so they are counted, not
  guessed about: a submission *holds* its files before it checks that they exist, and a
  job lets go of them when it ends (done, failed or cancelled: its frames are rendered
  or never will be). A file is deleted once no job holds it and both its upload and its
  last release are older than `files_grace_s`, so a file uploaded for a submission that
  is still being made is kept, and an artist who resubmits at once uploads nothing.
  A deletion first marks the file, in the same atomic step that checks nothing holds it;
  a submission that tries to hold a marked file is told it is missing, so no job can
  ever refer to a deleted file, whatever the timing.
- Direct uploads (uploads.py) that were never committed are deleted `files_grace_s` after
  they landed; a job's uncommitted part uploads go with its parts.
- A job whose gateway died while writing its parts (staging.py) is discarded part by part.
- Final archives are deleted `archive_retention_s` after their job finished, and the job
  becomes `expired`: its download link then answers 410 with a message that says so.
- An estimate nobody resumed (estimates.py) expires `archive_retention_s` after its samples
  were in, like a finished job's archive: it ends, and goes as every ended job does.
- An ended job's records (the job, its parts, manifest and index entries) are deleted
  `record_retention_s` after it ended, never before its archive's retention: until then it
  is still listed (as expired, once its archive is gone), and Redis does not grow forever.

The sweep runs in every gateway process but takes a Redis lock for one period, so one
process of one gateway does it each period. It reads the jobs that still hold files
and the archives past retention, never all jobs; scene files are found by listing
`files/` in storage.
"""
from __future__ import annotations

import contextlib
import logging
import re
import secrets
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Literal, cast

from . import estimates, keys, staging
from .errors import ApiError
from .farm import Farm
from .gateways import redis_now_ms

log = logging.getLogger("framefarm.gateway.cleanup")

ENDED = ("done", "failed", "cancelled", "expired")
# How long a file stays marked for deletion if the sweep that marked it dies.
DELETING_TTL_S = 600
# Holders examined per sweep: the jobs still running plus those that ended since the last one.
MAX_HOLDERS = 10_000
MAX_ARCHIVES = 1_000
MAX_RECORDS = 100  # jobs whose records one sweep removes
RECORD_BATCH = 1_000  # part hashes deleted per round trip
_FILE_KEY = re.compile(re.escape(keys.scene_file("")) + "([0-9a-f]{64})")


@dataclass
class Hold:
    """A submission's hold on its scene files; `keep` once the job is recorded."""

    job_id: str
    blocked: set[str]
    keep: bool = False


@contextlib.contextmanager
def holding_files(farm: Farm, job_id: str, shas: Iterable[str]) -> Iterator[Hold]:
    """Hold `shas` for a job about to be recorded. Files being deleted right now are
    not held but listed in `blocked`: report them missing. Unless `keep` is set by the
    end of the block, the hold is dropped without a trace."""
    hold = Hold(job_id, _hold(farm, job_id, shas))
    try:
        yield hold
    finally:
        if not hold.keep:
            _release(farm, job_id, "abort")


@dataclass
class Report:
    discarded: list[str] = field(default_factory=list)
    released: list[str] = field(default_factory=list)
    expired: list[str] = field(default_factory=list)
    deleted_files: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


def step(farm: Farm) -> Report | None:
    """Background step: sweep, unless another gateway process swept this period."""
    period_ms = max(1000, farm.ms(farm.settings.cleanup_period_s))
    if not farm.redis.set(keys.CLEANUP_LOCK, secrets.token_hex(8), nx=True, px=period_ms):
        return None
    report = sweep(farm)
    if report.released or report.expired or report.deleted_files or report.removed:
        log.info("clean-up: %d job(s) let go of their files, %d archive(s) expired, %d scene file(s) deleted, "
                 "%d job record(s) removed", len(report.released), len(report.expired), len(report.deleted_files),
                 len(report.removed))
    return report


def sweep(farm: Farm) -> Report:
    report = Report()
    discard_abandoned(farm, report)
    report.expired += estimates.expire_idle(farm)  # before release_ended, which then lets go of them
    release_ended(farm, report)
    expire_archives(farm, report)
    remove_records(farm, report)
    delete_unheld_files(farm, report)
    return report


def discard_abandoned(farm: Farm, report: Report) -> None:
    """Jobs whose gateway died while writing their parts (their staging ran past its
    deadline, staging.STAGING_TTL_S) leave nothing behind: their parts are deleted."""
    stale = farm.redis.zrangebyscore(keys.STAGING, "-inf", redis_now_ms(farm.redis), start=0, num=100)
    for job_id in cast(list[str], stale):
        staging.discard(farm, job_id)
        report.discarded.append(job_id)


def release_ended(farm: Farm, report: Report) -> None:
    """Jobs that ended let go of their files and lose any parts left in storage. A hold
    whose job was never recorded (its gateway died mid-submission) goes after the grace."""
    now = redis_now_ms(farm.redis)
    holders = cast(list[tuple[str, float]], farm.redis.zrange(keys.FILE_HOLDERS, 0, MAX_HOLDERS - 1, withscores=True))
    pipe = farm.redis.pipeline()
    for job_id, _ in holders:
        pipe.hget(keys.job(job_id), "status")
    for (job_id, held_at), status in zip(holders, pipe.execute()):
        orphan = status is None and now - held_at >= farm.ms(farm.settings.files_grace_s)
        if not orphan and (status is None or status not in ENDED):
            continue
        if _release(farm, job_id, "ended"):
            farm.storage.delete_prefix(keys.job_parts(job_id))
            report.released.append(job_id)
            if status is not None:  # every ended job passes here once: its records are due then
                s = farm.settings
                keep_ms = farm.ms(max(s.record_retention_s, s.archive_retention_s))
                farm.redis.zadd(keys.RECORDS_DUE, {job_id: now + keep_ms})


def expire_archives(farm: Farm, report: Report) -> None:
    cutoff = redis_now_ms(farm.redis) - farm.ms(farm.settings.archive_retention_s)
    for job_id in cast(list[str], farm.redis.zrangebyscore(keys.ARCHIVES, "-inf", cutoff, start=0, num=MAX_ARCHIVES)):
        if _expire(farm, job_id):
            farm.storage.delete(keys.archive(job_id))
            farm.storage.delete(keys.previews(job_id))
            farm.storage.delete(keys.movie(job_id))
            report.expired.append(job_id)
        farm.redis.zrem(keys.ARCHIVES, job_id)


def remove_records(farm: Farm, report: Report) -> None:
    """Delete the records of jobs ended longer ago than `record_retention_s`: the job's hash
    and its parts', its manifest, queue and block lists, its entries in the job indexes, and
    whatever it still has in storage. Parts go in batches, so a job of 100,000 parts never
    holds Redis for long."""
    due = farm.redis.zrangebyscore(keys.RECORDS_DUE, "-inf", redis_now_ms(farm.redis), start=0, num=MAX_RECORDS)
    for job_id in cast(list[str], due):
        owner, total, status = cast(list[str | None], farm.redis.hmget(keys.job(job_id), "owner", "parts_total",
                                                                        "status"))
        if status in ("queued", "running", "assembling"):  # a failed job retried since (job_actions.py)
            farm.redis.zrem(keys.RECORDS_DUE, job_id)
            continue
        n = int(total or 0)
        for start in range(0, n, RECORD_BATCH):
            farm.redis.unlink(*(keys.part(keys.part_id(job_id, i)) for i in range(start, min(n, start + RECORD_BATCH))))
        farm.storage.delete_prefix(keys.job_parts(job_id))
        farm.storage.delete(keys.archive(job_id))
        farm.storage.delete(keys.movie(job_id))
        farm.storage.delete(keys.previews(job_id))
        pipe = farm.redis.pipeline(transaction=True)
        if owner:
            pipe.zrem(keys.owner_jobs(owner), job_id)
            pipe.zrem(keys.owner_active(owner), job_id)
        for index in (keys.ALL_JOBS, keys.ARCHIVES, keys.ASSEMBLY):
            pipe.zrem(index, job_id)
        pipe.unlink(keys.manifest(job_id), keys.job_queue(job_id), keys.job_held(job_id), keys.blocklist(job_id),
                    keys.worker_failures(job_id), keys.files_held(job_id), keys.job(job_id))
        pipe.zrem(keys.RECORDS_DUE, job_id)  # last: a sweep that dies midway does it again
        pipe.execute()
        report.removed.append(job_id)


def delete_unheld_files(farm: Farm, report: Report) -> None:
    grace_ms = farm.ms(farm.settings.files_grace_s)
    now = redis_now_ms(farm.redis)
    for obj in farm.storage.list_prefix(keys.FILES):
        m = _FILE_KEY.fullmatch(obj.key)
        if now - obj.updated * 1000 < grace_ms:
            continue
        if obj.key.startswith(keys.INCOMING_FILES):  # a direct upload never committed
            farm.storage.delete(obj.key)
            continue
        if not m:
            continue
        sha = m.group(1)
        if not _doom(farm, sha, grace_ms):
            continue
        try:
            farm.storage.delete(obj.key)
            # Its owners go with it (after the object, so an upload racing the deletion is
            # forgotten too): whoever uploads the bytes again owns the new file.
            farm.redis.delete(keys.file_owners(sha))
            report.deleted_files.append(sha)
        finally:
            farm.redis.delete(keys.file_deleting(sha))


def _hold(farm: Farm, job_id: str, shas: Iterable[str]) -> set[str]:
    """lua/hold_files.lua: the files being deleted right now (then nothing is held)."""
    return set(farm.scripts.hold_files(args=[job_id, *sorted(set(shas))]))


def _release(farm: Farm, job_id: str, mode: Literal["abort", "ended"]) -> bool:
    """lua/release_files.lua: True if this call let go of the job's hold."""
    return bool(farm.scripts.release_files(args=[job_id, mode]))


def _expire(farm: Farm, job_id: str) -> bool:
    """lua/expire_archive.lua: True when the caller should delete the job's archive."""
    return bool(farm.scripts.expire_archive(args=[job_id]))


def _doom(farm: Farm, sha: str, grace_ms: int) -> bool:
    """lua/doom_file.lua: True when the caller may delete the unheld file (it is marked first)."""
    return bool(farm.scripts.doom_file(args=[sha, grace_ms, DELETING_TTL_S]))


def expired_error(job: dict[str, str], settings) -> ApiError:
    return ApiError(410, "expired",
                    f"the frames of job {job['id']} were deleted: this farm keeps finished jobs' results "
                    f"for {_duration(settings.archive_retention_s)}. Submit the scene again to render them anew.")


def _duration(seconds: int) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            n = seconds // size
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return f"{seconds} seconds"
