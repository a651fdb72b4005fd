"""Process lifetimes: children that do not outlive their parent, and stop signals.

A worker killed with SIGKILL must not leave Blender rendering a part that the
farm is about to hand to another worker, and `framefarm up` killed hard must not
leave its gateways and workers behind.
"""
from __future__ import annotations

import ctypes
import os
import signal
import threading
from typing import Callable

_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM):
    """A preexec_fn for subprocess.Popen: the child gets `sig` when its parent dies (Linux)."""

    def preexec() -> None:
        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, sig)
        except (OSError, AttributeError):  # not Linux: nothing to set
            pass

    return preexec


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def on_stop_signals(graceful: Callable[[], object], now: Callable[[], object] | None = None) -> None:
    """Call `graceful` (on a thread of its own) at the first SIGTERM or SIGINT, and
    `now` at any later one: a second signal during a graceful stop means "stop now".

    Python runs a signal handler only on the main thread, between two bytecodes; the
    kernel, though, may deliver a signal to any thread, and then a main thread asleep
    in a lock (Event.wait) would not run the handler until something else woke it -
    seconds later, after a whole part had rendered. So the handler does nothing at all,
    and the C-level handler's write to the wake-up fd, which happens in whichever
    thread got the signal, wakes a reader thread that calls the callbacks. Nothing in
    a handler takes a lock, so a burst of signals cannot deadlock the process either
    (the handler before this one called Event.set() itself: a signal landing while
    an earlier handler held the Event's lock hung the process for good).

    The C-level handler writes the number of each signal it sees (the kernel merges
    a burst of one signal still pending into one), so any stop signal read after the
    first is a second one; `now` is called for each, so it must be idempotent.
    """
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)  # a full pipe must never block the signal path
    for sig in STOP_SIGNALS:
        signal.signal(sig, lambda *_: None)
    signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)

    def relay() -> None:
        seen = 0
        while data := os.read(read_fd, 64):
            count = sum(1 for number in data if number in STOP_SIGNALS)
            if count and not seen:
                graceful()
            if count and now is not None and seen + count > 1:
                now()
            seen += count

    threading.Thread(target=relay, name="stop-signals", daemon=True).start()
