"""Redis data written by an earlier Framefarm, brought to this layout at start-up.

The first layout queued parts, not jobs: a Blender version's queue held part ids and
each part carried its score. Left as they are, those entries would be taken for jobs
by a claim and dropped, and the frames of every job queued across an upgrade would be
lost. Every gateway process runs this once as it starts; the script is idempotent,
so gateways starting together do no harm, and a farm with nothing old finds nothing.
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


def _batches(items: list[str]) -> Iterator[list[str]]:
    for i in range(0, len(items), BATCH):
        yield items[i:i + BATCH]
