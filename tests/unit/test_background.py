"""A gateway process's background loops (background.py): woken early, and still periodic."""
from __future__ import annotations

import threading

from framefarm.gateway.background import loop


def test_a_woken_loop_runs_its_step_at_once_and_a_failing_step_does_not_end_it():
    """The period is an hour: a second and third step can only come from `wake`."""
    stop, wake = threading.Event(), threading.Event()
    ran = threading.Semaphore(0)
    steps = []

    def step():
        steps.append(len(steps))
        ran.release()
        if len(steps) == 2:
            raise RuntimeError("a step that fails (logged; the loop goes on)")

    loop("test", 3600, step, stop, wake)
    try:
        assert ran.acquire(timeout=30)  # the first step runs when the loop starts
        for _ in range(2):
            wake.set()
            assert ran.acquire(timeout=30), "the woken loop did not step"
        assert steps == [0, 1, 2]
    finally:
        stop.set()
        wake.set()  # wakes the loop, which sees `stop` and ends
