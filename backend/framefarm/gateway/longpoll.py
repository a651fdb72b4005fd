"""Long-polls: a request that waits for news (a part to claim, a job's progress), and its caps.

Every waiting request of a gateway process waits the same way (`poll`): it asks once, and
while there is nothing to answer it sleeps on the process's event wake-ups (events.py) until
its topic fires or its time runs out. A waiting request holds one of the process's
connections (a greenlet under gunicorn's gevent worker; a thread under gthread) for up to half
a minute, so `Waiters` caps them: per process (`max_waiters`, below gunicorn's connections or
threads, so health checks, heartbeats and plain requests always get in) and per party (`max_waiters_per_token`: a client token, or one registered worker,
since one worker token is often shared by a whole farm). A request past a cap still gets
whatever its first ask found; only its wait is refused, with 429 and Retry-After.
"""
from __future__ import annotations

import _socket
import contextlib
import logging
import os
import threading
import time
from collections import Counter
from typing import Callable, Iterator, TypeVar

from .errors import TooMany
from .farm import Farm

T = TypeVar("T")
log = logging.getLogger("framefarm.gateway.longpoll")

# Upper bound on a wait's sleep between asks while events may be missed (events.py: the
# subscription is down); while it stands, a wait sleeps until an event or its deadline.
POLL_S = 2.0
# What a refused wait is told: long enough for some waits to end, short enough for news.
RETRY_AFTER_S = 2
# Woken waits of one process that ask at once: news wakes every wait of its topic (thousands
# of idle workers' claims, under gevent), and each ask is a Redis call; the rest queue here.
ASKING_AT_ONCE = 32


class Waiters:
    """The long-polls one gateway process holds, counted in total and per party."""

    def __init__(self, limit: int, per_party: int) -> None:
        self.limit, self.per_party = limit, per_party
        self._lock = threading.Lock()
        self._count: Counter[str] = Counter()
        self._total = 0
        self.asking = threading.BoundedSemaphore(ASKING_AT_ONCE)

    @contextlib.contextmanager
    def admit(self, party: str) -> Iterator[None]:
        """Hold a waiting slot for `party`; 429 when this process or this party has no slot left."""
        with self._lock:
            if self._total >= self.limit:
                raise TooMany("too_many_waiting",
                              f"this gateway process already holds {self.limit} waiting requests "
                              f"(FRAMEFARM_MAX_WAITERS); ask again in a moment", RETRY_AFTER_S)
            if self._count[party] >= self.per_party:
                raise TooMany("too_many_waiting",
                              f"this token already holds {self.per_party} waiting requests on this gateway "
                              f"process (FRAMEFARM_MAX_WAITERS_PER_TOKEN); wait for them to answer, or poll "
                              f"fewer jobs at once", RETRY_AFTER_S)
            self._count[party] += 1
            self._total += 1
            log.debug("long-poll admitted for party %s (%d waiting in this process)", party, self._total)
        try:
            yield
        finally:
            with self._lock:
                self._total -= 1
                self._count[party] -= 1
                if not self._count[party]:
                    del self._count[party]

    @property
    def waiting(self) -> int:
        with self._lock:
            return self._total


def poll(farm: Farm, waiters: Waiters, party: str, topic: str, ask: Callable[[], T | None],
         wait_s: float) -> T | None:
    """`ask()`'s first answer that is not None, asking again whenever `topic` fires, for up to
    `wait_s`; None when the time ran out. Past a cap of `waiters` the first answer is still
    returned if there is one, and 429 raised otherwise."""
    notifier = farm.notifier
    deadline = time.monotonic() + wait_s
    # The generation is taken before asking, so an event landing in between is never lost.
    gen = notifier.generation(topic)
    got = ask()
    if got is not None or wait_s <= 0 or notifier.closing:
        return got
    with waiters.admit(party):
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or notifier.closing:
                return None
            notifier.wait(topic, gen, left if notifier.subscribed else min(left, POLL_S))
            gen = notifier.generation(topic)
            with waiters.asking:
                got = ask()
            if got is not None:
                return got


def client_gone(environ: dict) -> bool:
    """Whether the client of this request has closed its connection: a worker whose process
    ended while its claim waited, whose claim must not take a part nobody will render. Only
    gunicorn says which socket a request came on (elsewhere: never gone). A peer that vanished
    without closing (its machine lost power) is not seen here; its lease runs out instead. Over
    TLS a client's close_notify reads as data, so such a client is not seen as gone either."""
    sock = environ.get("gunicorn.socket")
    if sock is None:
        return False
    try:
        # Peeked through a plain socket on a copy of the descriptor: gevent's socket object (or
        # one with a timeout) would wait for data to come instead of answering at once.
        peer = _socket.socket(fileno=os.dup(sock.fileno()))
    except OSError:  # gunicorn already closed it
        return True
    try:
        return peer.recv(1, _socket.MSG_PEEK | _socket.MSG_DONTWAIT) == b""
    except (BlockingIOError, InterruptedError):  # open, and nothing sent since the request
        return False
    except OSError:  # reset by the peer
        return True
    finally:
        peer.close()
