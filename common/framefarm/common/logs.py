"""One log format for every Framefarm process: time, level, process/thread, component.

With FRAMEFARM_LOG_FORMAT=json each event is one JSON object on one line instead (for a log
pipeline), with the job, part and worker ids the message names as fields of their own.
"""
from __future__ import annotations

import datetime
import json
import logging
import os
import re
import sys

FORMAT = "%(asctime)s %(levelname)-7s [%(process)d/%(threadName)s] %(name)s: %(message)s"


# Ids as the farm writes them: a part `<job>:<index>`, a job 12 hex digits, a worker `w-` and 12.
_PART = re.compile(r"\b([0-9a-f]{12}):(\d+)\b")
_JOB = re.compile(r"\bjob ([0-9a-f]{12})\b")
_WORKER = re.compile(r"\b(w-[0-9a-f]{12})\b")


class JsonFormatter(logging.Formatter):
    """One JSON object per event: time, level, logger, process, thread, message, and the ids."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        out: dict[str, object] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc).isoformat(
                timespec="milliseconds"),
            "level": record.levelname, "logger": record.name, "process": record.process,
            "thread": record.threadName, "message": message}
        part = _PART.search(message)
        job = _JOB.search(message)
        worker = _WORKER.search(message)
        if part:
            out["part"], out["job"] = part[0], part[1]
        elif job:
            out["job"] = job[1]
        if worker:
            out["worker"] = worker[1]
        if record.exc_info:
            out["error"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def formatter() -> logging.Formatter:
    """The formatter FRAMEFARM_LOG_FORMAT asks for: `json`, or the readable lines (the default)."""
    if os.environ.get("FRAMEFARM_LOG_FORMAT", "").lower() == "json":
        return JsonFormatter()
    return logging.Formatter(FORMAT)


def setup(level: str | None = None, stream=None) -> None:
    level = (level or os.environ.get("FRAMEFARM_LOG_LEVEL") or "INFO").upper()
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # urllib3 and werkzeug are chatty and may echo URLs; keep them to warnings.
    for noisy in ("urllib3", "werkzeug"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
