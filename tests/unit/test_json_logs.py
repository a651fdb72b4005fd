"""FRAMEFARM_LOG_FORMAT=json: one JSON object per event, with the ids the message names."""
from __future__ import annotations

import io
import json
import logging

import pytest

from framefarm.common import logs


@pytest.fixture(autouse=True)
def _root_logger_restored():
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:], root.level = handlers, level


def test_json_lines_carry_the_job_part_and_worker_ids(monkeypatch):
    monkeypatch.setenv("FRAMEFARM_LOG_FORMAT", "json")
    out = io.StringIO()
    logs.setup("INFO", stream=out)
    log = logging.getLogger("framefarm.test")
    log.info("part 0123456789ab:7 done by w-aaaaaaaaaaaa")
    log.warning("job fedcba987654 failed: \"quoted\"\nsecond line")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("assembling failed")
    lines = out.getvalue().splitlines()
    assert len(lines) == 3, "one line per event, newlines in messages escaped"
    first, second, third = (json.loads(line) for line in lines)
    assert (first["part"], first["job"], first["worker"], first["level"]) == ("0123456789ab:7", "0123456789ab",
                                                                               "w-aaaaaaaaaaaa", "INFO")
    assert second["job"] == "fedcba987654" and "part" not in second and second["message"].endswith("second line")
    assert "ValueError: boom" in third["error"] and third["logger"] == "framefarm.test"


def test_the_readable_format_stays_the_default(monkeypatch):
    monkeypatch.delenv("FRAMEFARM_LOG_FORMAT", raising=False)
    out = io.StringIO()
    logs.setup("INFO", stream=out)
    logging.getLogger("framefarm.test").info("job fedcba987654 queued")
    assert not out.getvalue().startswith("{") and "framefarm.test: job fedcba987654 queued" in out.getvalue()
