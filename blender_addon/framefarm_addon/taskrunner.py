"""The add-on's task runner: threads for slow work, and the one queue through which
their results reach Blender.

Blender's data may only be touched on the main thread, so a background task gets
a `post(kind, **payload)` function and nothing else; `drain()` runs on the main
thread (called by a `bpy.app.timers` function, or in a loop by a script or test,
since timers do not fire while a `blender -b --python` script runs) and hands
each message to the handler registered for its kind.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any, Callable

log = logging.getLogger("framefarm.addon")

Handler = Callable[..., None]

_queue: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
_handlers: dict[str, Handler] = {}
_threads: dict[str, threading.Thread] = {}
_lock = threading.Lock()
stop = threading.Event()  # set when the add-on is disabled: watchers end


def post(kind: str, **payload: Any) -> None:
    """Called from any thread; the message is handled later on the main thread."""
    _queue.put((kind, payload))


def on(kind: str) -> Callable[[Handler], Handler]:
    """Register the main-thread handler for one kind of message."""
    def register(fn: Handler) -> Handler:
        _handlers[kind] = fn
        return fn
    return register


def start(name: str, target: Callable[..., None], *args: Any) -> bool:
    """Run `target(post, *args)` on a daemon thread named `name`, unless one by that
    name is still running. Unexpected exceptions become an "error" message."""
    def run() -> None:
        try:
            target(post, *args)
        except Exception as exc:  # a bug in a task must not pass silently
            log.exception("Framefarm task %s failed", name)
            post("error", message=f"{name} failed: {type(exc).__name__}: {exc}")

    with _lock:
        if name in _threads and _threads[name].is_alive():
            return False
        thread = threading.Thread(target=run, name=f"framefarm-{name}", daemon=True)
        _threads[name] = thread
    thread.start()
    return True


def running(prefix: str = "") -> list[str]:
    with _lock:
        return [name for name, t in _threads.items() if name.startswith(prefix) and t.is_alive()]


def drain() -> int:
    """Handle every queued message (main thread only); returns how many."""
    count = 0
    while True:
        try:
            kind, payload = _queue.get_nowait()
        except queue.Empty:
            return count
        count += 1
        handler = _handlers.get(kind)
        if handler is None:
            log.warning("Framefarm: no handler for %s", kind)
            continue
        try:
            handler(**payload)
        except Exception:  # one bad message must not stop the timer for good
            log.exception("Framefarm: handling %s failed", kind)


def drain_until(done: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """For scripts and tests: drain until `done()` holds or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while True:
        drain()
        if done():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def idle() -> bool:
    return _queue.empty() and not running()


def begin() -> None:
    stop.clear()


def end() -> None:
    """On unregister: threads see `stop` and end; queued messages are dropped."""
    stop.set()
    while not _queue.empty():
        _queue.get_nowait()
