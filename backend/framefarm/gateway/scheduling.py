"""Handing parts to workers: the atomic claim, its long-poll, and lease expiry.

A claim is one Lua step (lua/claim.lua): it first requeues expired leases, then takes
the highest-priority, oldest job from the job queues the worker's Blender can open
(skipping jobs the worker is kept away from), pops that job's lowest queued part, and
leases it to that worker with a token (a growing fence number and 128 random bits) and a
deadline on Redis's clock. Its cost does not grow
with the number of queued parts: the shared queues hold jobs, each job its own parts.
The same step checks that the caller's token registered the worker, prefers a job whose
scene the worker holds loaded (`held`, among jobs of the best priority), cuts a part of a
job sized by time to fit (see `carve` in lua/claim.lua) and answers with the job's fields,
so a claim costs Redis one call.
A lease that runs out is requeued by `reap` (lua/_lib.lua reap_expired).
"""
from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass

from framefarm.common.frameset import PartSpan

from . import finishing, framestats, keys, longpoll, metrics, parts, stills, workers
from .errors import ApiError
from .farm import Farm
from .longpoll import Waiters

# How many jobs at a queue's head a claim looks past when the worker is kept away from them.
SCAN_LIMIT = 64
# Held jobs a claim looks at (openapi.yaml's HeldJobs).
MAX_HELD = 16


@dataclass(frozen=True)
class Lease:
    part_id: str
    token: str
    deadline_ms: int
    span: PartSpan
    attempts: int
    job: dict[str, str]  # the job's fields as the claim read them


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
    frames_left: int = 0  # the job's frames not yet counted done, this part's included
    kind: str = "render"
    finish: str | None = None  # the job's finishing kind (finishing.py), on all its parts; None: none
    options: dict | None = None  # a finishing part's options (the job's finish.options)
    piece: dict | None = None  # which piece of a split still the part renders (stills.py); None: frames


class UnknownWorker(Exception):
    """The worker's registration expired (it was silent too long); it must register again."""


def claim_once(farm: Farm, worker_id: str, owner: str, held: Sequence[str] = (), wait_s: float = 0) -> Lease | None:
    """One claim for the worker registered under `owner`'s token; None when there is no work for it.
    The worker's registration is kept for the worker timeout past the claim's wait (`wait_s`): a
    waiting claim asks Redis again only when news comes (longpoll.py), and a worker waiting on
    one is alive."""
    s = farm.settings
    # The lease token's secret half: 128 bits from Python's CSPRNG (Lua has none).
    started = time.perf_counter()
    res = farm.scripts.claim(args=[worker_id, owner, farm.ms(s.lease_s), s.max_attempts, SCAN_LIMIT,
                                   int(s.worker_timeout_s + wait_s), secrets.token_hex(16), *held[:MAX_HELD]])
    metrics.claimed(time.perf_counter() - started, res[0] == "ok")
    if res[0] == "unknown_worker":
        raise UnknownWorker(worker_id)
    if res[0] == "not_your_worker":
        raise workers.not_yours(worker_id)
    if res[0] == "empty":
        return None
    pid, token, deadline = res[1:4]
    fields = res[9]
    return Lease(pid, token, int(deadline), parts.span_from(res[4:8]), int(res[8]),
                 dict(zip(fields[0::2], fields[1::2])))


def claim(farm: Farm, worker_id: str, owner: str, wait_s: float, waiters: Waiters,
          held: Sequence[str] = ()) -> Lease | None:
    """Claim a part, waiting up to `wait_s` for one to be queued (a long-poll: longpoll.py,
    woken by "work" events; past the process's cap on waiting requests, 429 after one try)."""
    return longpoll.poll(farm, waiters, f"worker:{worker_id}", "work",
                         lambda: claim_once(farm, worker_id, owner, held, wait_s), wait_s)


def reap(farm: Farm) -> int:
    """Requeue parts whose lease ran out; run by every gateway's background loop."""
    return int(farm.scripts.reap(args=[farm.settings.max_attempts]))


def claim_for(farm: Farm, worker_id: str, owner: str, wait_s: float | None, waiters: Waiters,
              held: Sequence[str] = ()) -> Claim | None:
    """The claim of a worker registered under `owner`'s token: a part and its job's scene, waiting
    up to `wait_s` (the farm's `claim_wait_s` when None, and never longer) for one to be queued;
    among the jobs of the best priority, one of `held` (jobs whose scene it holds loaded) first."""
    cap = farm.settings.claim_wait_s
    try:
        lease = claim(farm, worker_id, owner, cap if wait_s is None else min(wait_s, cap), waiters, held)
    except UnknownWorker:
        raise workers.unknown(worker_id) from None
    if lease is None:
        return None
    job_id = keys.job_of_part(lease.part_id)
    job = lease.job
    limit = job.get("max_frame_seconds")
    return Claim(lease, job_id, job["scene_hash"], job["main"], int(job["blender_version"]),
                 int(limit) if limit else None, job.get("format"), framestats.JobStats.of(job).seconds_per_frame,
                 max(0, int(job.get("frames_total", 0)) - int(job.get("frames_done", 0))),
                 **finishing.claim_fields(job, lease.span.index), piece=stills.claim_piece(job, lease.span.index))
