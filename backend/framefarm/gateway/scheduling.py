"""Handing parts to workers: the atomic claim, its long-poll, and lease expiry.

A claim is one Lua step (lua/claim.lua): it first requeues expired leases, then takes
the highest-priority, oldest job from the job queues the worker's Blender can open
(skipping jobs the worker is kept away from), pops that job's lowest queued part, and
leases it to that worker with a token (a growing fence number and 128 random bits) and a
deadline on Redis's clock. Its cost does not grow
with the number of queued parts: the shared queues hold jobs, each job its own parts.
A lease that runs out is requeued by `reap` (lua/_lib.lua reap_expired).
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass

from framefarm.common.frameset import PartSpan

from . import finishing, framestats, jobs, keys, longpoll, parts, workers
from .errors import ApiError
from .farm import Farm
from .longpoll import Waiters

# How many jobs at a queue's head a claim looks past when the worker is kept away from them.
SCAN_LIMIT = 64


@dataclass(frozen=True)
class Lease:
    part_id: str
    token: str
    deadline_ms: int
    span: PartSpan
    attempts: int


@dataclass(frozen=True)
class Claim:
    """A leased part with what a worker needs to render it: the job's scene and its Blender."""

    lease: Lease
    job_id: str
    scene_hash: str
    main: str
    blender_version: int
    max_frame_seconds: int | None = None  # the job's limit on one frame; None: none
    output_format: str | None = None  # the job's -F override of the scene's format; None: the scene's
    seconds_per_frame: float | None = None  # the job's measured mean (framestats.py); None: not yet
    kind: str = "render"
    finish: str | None = None  # the job's finishing kind (finishing.py), on all its parts; None: none
    options: dict | None = None  # a finishing part's options (the job's finish.options)


class UnknownWorker(Exception):
    """The worker's registration expired (it was silent too long); it must register again."""


def claim_once(farm: Farm, worker_id: str, version: int) -> Lease | None:
    s = farm.settings
    # The lease token's secret half: 128 bits from Python's CSPRNG (Lua has none).
    res = farm.scripts.claim(args=[worker_id, version, farm.ms(s.lease_s), s.max_attempts,
                                   SCAN_LIMIT, int(s.worker_timeout_s), secrets.token_hex(16)])
    if res[0] == "unknown_worker":
        raise UnknownWorker(worker_id)
    if res[0] == "empty":
        return None
    pid, token, deadline = res[1:4]
    return Lease(pid, token, int(deadline), parts.span_from(res[4:8]), int(res[8]))


def claim(farm: Farm, worker_id: str, version: int, wait_s: float, waiters: Waiters) -> Lease | None:
    """Claim a part, waiting up to `wait_s` for one to be queued (a long-poll: longpoll.py,
    woken by "work" events; past the process's cap on waiting requests, 429 after one try)."""
    return longpoll.poll(farm, waiters, f"worker:{worker_id}", "work",
                         lambda: claim_once(farm, worker_id, version), wait_s)


def reap(farm: Farm) -> int:
    """Requeue parts whose lease ran out; run by every gateway's background loop."""
    return int(farm.scripts.reap(args=[farm.settings.max_attempts]))


def claim_for(farm: Farm, worker_id: str, owner: str, wait_s: float | None, waiters: Waiters) -> Claim | None:
    """The claim of a worker registered under `owner`'s token: a part and its job's scene, waiting
    up to `wait_s` (the farm's `claim_wait_s` when None, and never longer) for one to be queued."""
    cap = farm.settings.claim_wait_s
    w = workers.load(farm, worker_id, owner)
    try:
        lease = claim(farm, worker_id, int(w["blender_version"]), cap if wait_s is None else min(wait_s, cap),
                      waiters)
    except UnknownWorker:
        raise ApiError(404, "unknown_worker", f"worker {worker_id} expired: register again") from None
    if lease is None:
        return None
    job_id = keys.job_of_part(lease.part_id)
    job = jobs.load(farm, job_id, None)
    limit = job.get("max_frame_seconds")
    return Claim(lease, job_id, job["scene_hash"], job["main"], int(job["blender_version"]),
                 int(limit) if limit else None, job.get("format"), framestats.JobStats.of(job).seconds_per_frame,
                 **finishing.claim_fields(job, lease.span.index))
