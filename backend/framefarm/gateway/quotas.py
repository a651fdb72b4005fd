"""The farm's limits on what one token may ask of it: a job's size, its priority, how many
jobs an owner runs at once, and how many requests a token makes per minute.

Each limit is a setting (config.Settings, FRAMEFARM_<NAME>); past one, the answer is a 4xx
whose message names that setting, and nothing is written. The frames a job may hold are
checked with its other rules (jobs.JobRequest); long-polls have their own caps (longpoll.py).
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Iterator, cast

from . import keys
from .auth import Identity
from .config import Settings
from .errors import ApiError, TooMany
from .farm import Farm

# Statuses of a job that still counts against its owner's active jobs.
UNENDED = ("queued", "running", "assembling", "estimated")  # estimated: waiting to be resumed
# A reservation whose job was never recorded (its submission died mid-way) stops counting
# once no staging can still be running (staging.STAGING_TTL_S, with room to spare).
ABANDONED_MS = 15 * 60 * 1000
WINDOW_S = 60


def check_priority(settings: Settings, priority: int, identity: Identity) -> None:
    """422 for a priority outside what the caller's role may use (admins: the API's range)."""
    lo, hi = settings.client_priority_min, settings.client_priority_max
    if not identity.is_admin and not lo <= priority <= hi:
        raise ApiError(422, "priority_not_allowed",
                       f"priority {priority} is outside what a client may use on this farm: {lo} to {hi} "
                       f"(FRAMEFARM_CLIENT_PRIORITY_MIN/MAX); an admin token may go past them")


def check_parts(settings: Settings, frames: int, chunk: int, parts: int) -> None:
    """413 for a job split into more parts than the farm records for one job."""
    if parts > settings.max_parts:
        raise ApiError(413, "too_many_parts",
                       f"{frames} frames in chunks of {chunk} make {parts} parts; this farm accepts at most "
                       f"{settings.max_parts} parts per job (FRAMEFARM_MAX_PARTS): use a chunk of at least "
                       f"{min_chunk(settings, frames)}", limit=settings.max_parts)


def min_chunk(settings: Settings, frames: int) -> int:
    """The smallest chunk that keeps `frames` within the parts limit (for a chunk the farm picks)."""
    return max(1, -(-frames // settings.max_parts))


@dataclass
class Slot:
    """A reservation of one of an owner's active jobs; `keep` once the job is recorded."""

    keep: bool = False


@contextlib.contextmanager
def active_job_slot(farm: Farm, owner: str, job_id: str) -> Iterator[Slot]:
    """Reserve one of `owner`'s active jobs for `job_id` while it is recorded; 429 (with no
    Retry-After: waiting alone does not end a job) when the owner has none left. Unless
    `keep` is set by the end of the block, the reservation is dropped without a trace.

    The owner's set of unended jobs is pruned here, of jobs that have ended since, so it
    stays as small as the limit; adding first and counting after, in one transaction, means
    parallel submissions can never pass the limit together."""
    limit = farm.settings.max_active_jobs
    index = keys.owner_active(owner)
    r = farm.redis
    now_ms = int(time.time() * 1000)
    members = cast(list[tuple[str, float]], r.zrange(index, 0, -1, withscores=True))
    if len(members) >= limit:
        pipe = r.pipeline(transaction=False)
        for jid, _ in members:
            pipe.hget(keys.job(jid), "status")
        gone = [jid for (jid, since), status in zip(members, pipe.execute())
                if (status is None and now_ms - since > ABANDONED_MS) or (status is not None and status not in UNENDED)]
        if gone:
            r.zrem(index, *gone)
    pipe = r.pipeline(transaction=True)
    pipe.zadd(index, {job_id: now_ms})
    pipe.zcard(index)
    count = pipe.execute()[1]
    if count > limit:
        r.zrem(index, job_id)
        raise ApiError(429, "too_many_active_jobs",
                       f"this token already has {limit} jobs queued, running or assembling, the most this farm "
                       f"allows (FRAMEFARM_MAX_ACTIVE_JOBS); wait for one to end or cancel one", limit=limit)
    slot = Slot()
    try:
        yield slot
    finally:
        if not slot.keep:
            r.zrem(index, job_id)


def admit_worker(farm: Farm, owner: str, wid: str) -> None:
    """Count the new worker `wid` among those `owner`'s token registered; 429
    `too_many_workers` (no Retry-After: live workers stay) past `max_workers_per_token`.
    Workers whose records are gone (unregistered, or silent past worker_timeout_s) stop
    counting here. Parallel registrations each count the others, so they may be refused
    together near the limit, never admitted past it."""
    r, index, limit = farm.redis, keys.owner_workers(owner), farm.settings.max_workers_per_token
    r.zadd(index, {wid: int(time.time() * 1000)})
    ids = [w for w in cast(list[str], r.zrange(index, 0, -1)) if w != wid]
    pipe = r.pipeline(transaction=False)
    for w in ids:
        pipe.exists(keys.worker(w))
    gone = [w for w, alive in zip(ids, pipe.execute()) if not alive]
    if gone:
        r.zrem(index, *gone)
    if len(ids) - len(gone) >= limit:
        r.zrem(index, wid)
        raise ApiError(429, "too_many_workers",
                       f"this token already has {limit} live workers registered, the most this farm allows "
                       f"(FRAMEFARM_MAX_WORKERS_PER_TOKEN); stop one, or ask the farm's operator for another token")


def count_request(farm: Farm, identity: Identity) -> None:
    """Count one request of `identity`'s token in this minute's window; 429 with Retry-After
    past the role's limit. One round trip: the increment and the key's expiry in one transaction."""
    s = farm.settings
    limit = {"client": s.client_requests_per_min, "worker": s.worker_requests_per_min}.get(identity.role, 0)
    if limit <= 0:
        return
    now = time.time()
    window = int(now // WINDOW_S)
    key = keys.request_count(identity.owner, window)
    pipe = farm.redis.pipeline(transaction=True)
    pipe.incr(key)
    pipe.expire(key, 2 * WINDOW_S)
    count = pipe.execute()[0]
    if count > limit:
        name = "FRAMEFARM_CLIENT_REQUESTS_PER_MIN" if identity.role == "client" else "FRAMEFARM_WORKER_REQUESTS_PER_MIN"
        raise TooMany("too_many_requests",
                      f"this token made more than {limit} requests this minute, the most this farm allows ({name}); "
                      f"ask again after the Retry-After seconds", (window + 1) * WINDOW_S - now)
