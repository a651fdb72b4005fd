"""Redis data written by an earlier Framefarm, brought to this layout at start-up.

The first layout queued parts, not jobs: a Blender version's queue held part ids and
each part carried its score. Left as they are, those entries would be taken for jobs
by a claim and dropped, and the frames of every job queued across an upgrade would be
lost. Every gateway process runs this once as it starts; the script is idempotent,
so gateways starting together do no harm, and a farm with nothing old finds nothing.

Leases were once a bare counter (`17`), guessable by any worker; now a lease token is
the fence number and 128 random bits (`17-9f3c...`), bound to the worker that claimed
it. A part leased under an old token is handed back at start-up (lua/release.lua, no
attempt counted) rather than left to renew a guessable lease: its worker is told to
abandon it at its next heartbeat, its late result is refused, and another worker
renders it, so a gateway upgraded mid-job loses no frame and fails no job.
"""
from __future__ import annotations

import logging
from typing import Iterator

from . import keys
from .farm import Farm

log = logging.getLogger("framefarm.gateway.upgrade")

BATCH = 500


def upgrade_parts(farm: Farm) -> int:
    """Move the first layout's queued and leased parts into this one; returns how many."""
    old = [pid for v in farm.redis.smembers(keys.QUEUES)
           for pid, _ in farm.redis.zscan_iter(keys.queue(v), match="*:*")]  # job ids have no ':'
    old += [pid for pid, _ in farm.redis.zscan_iter(keys.LEASES)]
    upgraded = sum(int(farm.scripts.upgrade_parts(args=batch)) for batch in _batches(old))
    if upgraded:
        log.info("moved %d part(s) queued or leased by an earlier Framefarm into this queue layout", upgraded)
    return upgraded


def run(farm: Farm) -> None:
    """Everything a gateway process brings up to date as it starts, oldest layout first."""
    upgrade_parts(farm)
    hand_back_old_leases(farm)


def hand_back_old_leases(farm: Farm) -> int:
    """Requeue the parts leased under a token of the old, guessable form; returns how many."""
    pids = [pid for pid, _ in farm.redis.zscan_iter(keys.LEASES)]
    pipe = farm.redis.pipeline()
    for pid in pids:
        pipe.hmget(keys.part(pid), "state", "token", "worker")
    handed = 0
    for pid, (state, token, wid) in zip(pids, pipe.execute()):
        if state == "leased" and token and wid and token.isdigit():
            # 'stale' when another gateway starting at the same time handed it back first.
            handed += farm.scripts.release(args=[pid, token, wid])[0] != "stale"
    if handed:
        log.info("handed back %d part(s) leased under an earlier Framefarm's lease tokens", handed)
    return handed


def _batches(items: list[str]) -> Iterator[list[str]]:
    for i in range(0, len(items), BATCH):
        yield items[i:i + BATCH]
