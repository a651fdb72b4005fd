"""Wake-ups for long-polls without polling Redis per waiting request.

One thread per gateway process subscribes to the farm's event channel; waiting
requests sleep on a condition until an event for their topic arrives. While the
subscription stands no event is missed, so a wait sleeps until its deadline and an
idle farm costs nothing but each waiting request's own renewal; when the subscription
is lost (a Redis outage) and when it stands again, every topic fires, and until then
waits wake every POLL_S (longpoll.py) to ask again. Waiters take the generation
*before* checking state, so an event that lands between the check and the wait is
never lost. Under gunicorn's gevent worker the thread is a greenlet and the condition
gevent's: the same code, cooperative.
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
        self._subscribed = False

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

    @property
    def subscribed(self) -> bool:
        """Whether events arrive now; while not, a wait cannot trust that one will wake it."""
        return self._subscribed

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

    def _resync(self, subscribed: bool) -> None:
        """The subscription came or went: events may have been missed, so every wait asks again."""
        with self._cond:
            self._subscribed = subscribed
            for topic in self._gen:
                self._gen[topic] += 1
            self._cond.notify_all()

    def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            pubsub = None
            try:
                pubsub = self._r.pubsub()
                pubsub.subscribe(keys.EVENTS)
                # From the server's confirmation on, no event is missed.
                if pubsub.get_message(timeout=5.0) is None:
                    raise redis.TimeoutError("no confirmation of the subscription")
                self._resync(True)
                backoff = 0.5
                while not self._stop.is_set():
                    msg = pubsub.get_message(timeout=1.0)
                    if msg and msg.get("type") == "message":
                        self._fire(msg["data"])  # the farm's client decodes replies
            except (redis.ConnectionError, redis.TimeoutError, OSError) as e:
                self._resync(False)
                log.warning("event subscription lost (%s); retrying in %.1fs", e, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                if pubsub is not None:
                    try:
                        pubsub.close()
                    except Exception:  # closing a dead connection may fail; nothing to keep
                        pass

