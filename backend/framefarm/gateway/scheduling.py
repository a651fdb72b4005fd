"""Handing parts to workers: the atomic claim, its long-poll, and lease expiry.

A claim is one Lua step (lua/claim.lua): it first requeues expired leases, then
takes the highest-priority, oldest part from the queues the worker's Blender can
open, and leases it with a fencing token and a deadline on Redis's clock.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from framefarm.common.frameset import PartSpan

from .farm import Farm

# How many queue heads a claim looks past when a worker is blocked from a job.
SCAN_LIMIT = 64
# Upper bound on a waiting claim's sleep between attempts, should an event be missed.
POLL_S = 2.0


@dataclass(frozen=True)
class Lease:
    part_id: str
    token: str
    deadline_ms: int
    span: PartSpan
    attempts: int


class UnknownWorker(Exception):
    """The worker's registration expired (it was silent too long); it must register again."""


def claim_once(farm: Farm, worker_id: str, version: int) -> Lease | None:
    s = farm.settings
    res = farm.scripts.claim(args=[worker_id, version, farm.ms(s.lease_s), s.max_attempts,
                                   SCAN_LIMIT, int(s.worker_timeout_s)])
    kind = res[0].decode()
    if kind == "unknown_worker":
        raise UnknownWorker(worker_id)
    if kind == "empty":
        return None
    pid, token, deadline, start, count, step, attempts = (x.decode() for x in res[1:])
    span = PartSpan(int(pid.rsplit(":", 1)[1]), int(start), int(count), int(step))
    return Lease(pid, token, int(deadline), span, int(attempts))


class Waiters:
    """Caps the long-polls one process holds, so waiting workers cannot take
    every request thread and starve clients."""

    def __init__(self, limit: int) -> None:
        self._sem = threading.BoundedSemaphore(limit)

    def __enter__(self) -> bool:
        self._ok = self._sem.acquire(blocking=False)
        return self._ok

    def __exit__(self, *exc) -> None:
        if self._ok:
            self._sem.release()


def claim(farm: Farm, worker_id: str, version: int, wait_s: float, waiters: Waiters) -> Lease | None:
    """Claim a part, waiting up to `wait_s` for one to be queued."""
    deadline = time.monotonic() + wait_s
    with waiters as may_wait:
        while True:
            gen = farm.notifier.generation("work")
            lease = claim_once(farm, worker_id, version)
            left = deadline - time.monotonic()
            if lease is not None or left <= 0 or not may_wait or farm.notifier.closing:
                return lease
            farm.notifier.wait("work", gen, min(left, POLL_S))


def reap(farm: Farm) -> int:
    """Requeue parts whose lease ran out; run by every gateway's background loop."""
    return int(farm.scripts.reap(args=[farm.settings.max_attempts]))
