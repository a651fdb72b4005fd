"""One log format for every Framefarm process: time, level, process/thread, component."""
from __future__ import annotations

import logging
import os
import sys

FORMAT = "%(asctime)s %(levelname)-7s [%(process)d/%(threadName)s] %(name)s: %(message)s"


def setup(level: str | None = None, stream=None) -> None:
    level = (level or os.environ.get("FRAMEFARM_LOG_LEVEL") or "INFO").upper()
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # urllib3 and werkzeug are chatty and may echo URLs; keep them to warnings.
    for noisy in ("urllib3", "werkzeug"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
