"""Wake-ups for long-polls without polling Redis per waiting request.

One thread per gateway process subscribes to the farm's event channel; waiting
requests sleep on a condition until an event for their topic arrives (or their
poll interval passes, which bounds the cost of a missed event or a Redis outage).
Waiters take the generation *before* checking state, so an event that lands
between the check and the wait is never lost.
"""
from __future__ import annotations

import logging
import threading
from collections import defaultdict

import redis

from . import keys

log = logging.getLogger("framefarm.gateway.events")


class Notifier:
    def __init__(self, r: redis.Redis) -> None:
        self._r = r
        self._cond = threading.Condition()
        self._gen: dict[str, int] = defaultdict(int)
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._closing = False

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="events", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def close_waiters(self) -> None:
        """The process is shutting down: every wait returns now, so long-polls
        answer at once instead of holding a graceful shutdown for their full length."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()

    @property
    def closing(self) -> bool:
        return self._closing

    def generation(self, topic: str) -> int:
        with self._cond:
            return self._gen[topic]

    def wait(self, topic: str, since: int, timeout: float) -> bool:
        """Sleep until `topic` fires after generation `since`; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._closing or self._gen[topic] != since, timeout)

    def _fire(self, topic: str) -> None:
        with self._cond:
            self._gen[topic] += 1
            if topic.startswith("job:"):  # `job:*`: any job changed (the dashboard's jobs list)
                self._gen["job:*"] += 1
            self._cond.notify_all()

    def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            pubsub = None
            try:
                pubsub = self._r.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(keys.EVENTS)
                backoff = 0.5
                while not self._stop.is_set():
                    msg = pubsub.get_message(timeout=1.0)
                    if msg and msg.get("type") == "message":
                        self._fire(msg["data"])  # the farm's client decodes replies
            except (redis.ConnectionError, redis.TimeoutError, OSError) as e:
                log.warning("event subscription lost (%s); retrying in %.1fs", e, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                if pubsub is not None:
                    try:
                        pubsub.close()
                    except Exception:  # closing a dead connection may fail; nothing to keep
                        pass

