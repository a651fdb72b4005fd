"""The CLI's progress meters, fed a made-up job and a made-up clock: a rich bar with
frames done of the total, the rate and the time left on a terminal; plain lines, one
per change and without control codes, on a pipe or with --json."""
from __future__ import annotations

import io

import pytest

from framefarm.cli.commands import Meter, duration, size


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def job(done: int, total: int = 120, status: str = "running", waiting: str = "") -> dict:
    return {"status": status, "waiting_reason": waiting, "frames": {"done": done, "total": total}}


def feed(meter: Meter, clock: Clock, states: list[tuple[float, dict]]) -> None:
    for at, state in states:
        clock.now = 1000.0 + at
        meter.job(state)
    meter.close()


# Two frames a minute: 10 frames at 1 min, 20 at 6 min, 30 at 11 min.
STATES = [(0, job(0, status="queued", waiting="no worker has Blender 5.0")), (30, job(0)), (60, job(10)),
          (60, job(10)), (360, job(20)), (660, job(30)), (700, job(120, status="done"))]


def test_on_a_pipe_one_plain_line_per_change_with_rate_and_time_left() -> None:
    out, clock = io.StringIO(), Clock()
    feed(Meter("frames", stream=out, clock=clock), clock, STATES)
    assert out.getvalue().splitlines() == [
        "0/120 frames  queued (no worker has Blender 5.0)",
        "0/120 frames  running",
        "10/120 frames  running",
        "20/120 frames  running  2.0 frames/min  about 50m00s left",
        "30/120 frames  running  2.0 frames/min  about 45m00s left",
        "120/120 frames  done",
    ]


def test_json_mode_is_plain_even_on_a_terminal() -> None:
    out, clock = Terminal(), Clock()
    feed(Meter("frames", stream=out, live=False, clock=clock), clock, STATES)
    assert "\x1b" not in out.getvalue()
    assert out.getvalue().splitlines()[-1] == "120/120 frames  done"


def test_on_a_terminal_a_bar_with_count_rate_and_time_left() -> None:
    out, clock = Terminal(), Clock()
    meter = Meter("frames", stream=out, clock=clock)
    feed(meter, clock, STATES[:-1])
    text = out.getvalue()
    assert "\x1b[" in text and "━" in text  # drawn in place, with a bar
    last = text.rsplit("\r", 1)[-1]
    assert "30/120" in last and "frames" in last and "running" in last, last
    assert "2.0 frames/min" in last and "0:45:00" in last, last  # rate, and rich's time left


def test_upload_lines_come_in_tens_of_percent() -> None:
    out = io.StringIO()
    meter = Meter("upload", stream=out)
    total = 10 * 1024 * 1024
    for sent in range(0, total + 1, 64 * 1024):
        meter.upload(sent, total)
    meter.close()
    lines = out.getvalue().splitlines()
    assert lines[0] == "uploading 0% (0 B of 10.0 MiB)"
    assert [line.split()[1] for line in lines] == [f"{p}%" for p in range(0, 101, 10)]
    assert lines[-1] == "uploading 100% (10.0 MiB of 10.0 MiB)"


def test_nothing_is_drawn_before_the_first_news() -> None:
    out = Terminal()
    Meter("upload", stream=out).close()  # nothing to upload: no empty bar
    assert out.getvalue() == ""
    with pytest.raises(ValueError):
        Meter("bytes", stream=out)


@pytest.mark.parametrize("seconds, text", [(0, "0s"), (59.4, "59s"), (60, "1m00s"), (3599, "59m59s"),
                                           (3600, "1h00m"), (11000, "3h03m")])
def test_duration(seconds: float, text: str) -> None:
    assert duration(seconds) == text


def test_size() -> None:
    assert [size(n) for n in (0, 1023, 1024, 5 * 1024**3, 3 * 1024**4)] == \
        ["0 B", "1023 B", "1.0 KiB", "5.0 GiB", "3072.0 GiB"]
