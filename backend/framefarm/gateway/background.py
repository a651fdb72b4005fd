"""A gateway process's background duties, each a small loop in a daemon thread.

All of them are safe to run in every process of every gateway at once: each
step is an atomic Redis script or takes a lock, so the first to act wins.
"""
from __future__ import annotations

import logging
import threading
from typing import Callable

import redis

log = logging.getLogger("framefarm.gateway.background")


def loop(name: str, period: float, step: Callable[[], object], stop: threading.Event,
         wake: threading.Event | None = None) -> threading.Thread:
    """Run `step()` every `period` seconds, surviving errors: a Redis outage must
    not end a gateway's duties, only pause them. What a step returns is ignored.
    `wake`, set, runs the next step at once (and is cleared): a request of this process that
    knows there is work (a job's last result, for the assembler) saves the step its wait."""

    def run() -> None:
        while not stop.is_set():
            try:
                step()
            except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError, OSError) as e:
                log.warning("%s: redis unavailable (%s)", name, e)
            except Exception:
                log.exception("%s failed", name)
            if wake is None:
                stop.wait(period)
            else:
                wake.wait(period)
                wake.clear()

    t = threading.Thread(target=run, name=name, daemon=True)
    t.start()
    return t
