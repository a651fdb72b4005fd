"""The worker's limits on one Blender (issue 9, item 8): sizes as the operator writes them,
and which frame a Blender is on, read from its own output lines."""
from __future__ import annotations

import os
import time

import pytest

from framefarm.worker.limits import FrameClock, format_size, over_memory, parse_size, tree_rss


@pytest.mark.parametrize("text, size", [("2GiB", 2 << 30), ("2G", 2 << 30), ("512M", 512 << 20),
                                        ("512 MiB", 512 << 20), ("1.5GiB", 3 << 29), ("1048576", 1 << 20),
                                        ("64KiB", 64 << 10), ("100b", 100)])
def test_sizes(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "lots", "2 GB RAM", "-1G", "1X"])
def test_sizes_refused(text):
    with pytest.raises(ValueError, match="a size looks like"):
        parse_size(text)


def test_sizes_shown():
    assert [format_size(n) for n in (2 << 30, 450 << 20, 3 << 29, 999)] == ["2 GiB", "450 MiB", "1.5 GiB",
                                                                            "999 bytes"]


def test_the_frame_clock_follows_blenders_lines():
    clock = FrameClock([10, 12, 14])
    assert clock.current() == 10 and clock.overdue(None) is None and clock.overdue(60) is None
    clock.since = time.monotonic() - 61  # as if a minute had passed on frame 10
    assert clock.overdue(60) == "frame 10 took longer than 60 s (the job's max_frame_seconds)"
    clock.line("Saved: '/out/0010.png'")  # a frame done: its clock restarts, the next frame is 12
    assert clock.overdue(60) is None and clock.current() == 12
    clock.line("Fra:12 Mem:12.00M (Peak 12.00M) | Time:00:00.10 | Syncing Plane")
    clock.line("Saved: /scene/tex_0012.png")  # a compositor File Output, not a frame
    assert clock.current() == 12 and clock.saved == 1
    clock.since = time.monotonic() - 2.5
    assert clock.overdue(2) == "frame 12 took longer than 2 s (the job's max_frame_seconds)"


def test_the_frame_clock_measures_each_frame_and_the_scene_load():
    clock = FrameClock([1, 2])
    clock.started = time.monotonic() - 3
    clock.line("Fra:1 Mem:12.00M (Peak 12.00M) | Time:00:00.10 | Syncing Plane")  # loaded: 3 s after start
    assert 2.9 < clock.load_seconds < 3.5
    clock.memory(300 << 20)
    clock.memory(200 << 20)
    clock.loaded = time.monotonic() - 0.5
    clock.line("Saved: '/out/0001.png'")
    clock.since = time.monotonic() - 0.25
    clock.line("Fra:2 Mem:12.00M (Peak 12.00M) | Time:00:00.10 | Syncing Plane")
    clock.line("Saved: '/out/0002.png'")
    first, second = clock.stats
    assert (first.frame, first.peak_rss_bytes, second.frame) == (1, 300 << 20, 2)
    assert 0.45 < first.seconds < 1 and 0.2 < second.seconds < 0.5  # a frame's time, never the load's
    assert second.peak_rss_bytes == 200 << 20  # the level when frame 2 began, no later measurement
    assert first.as_json() == {"frame": 1, "seconds": round(first.seconds, 4), "peak_rss_bytes": 300 << 20}


def test_memory_of_a_process_tree():
    own = tree_rss(os.getpid())
    assert own > 1 << 20
    assert over_memory(os.getpid(), None) is None and over_memory(os.getpid(), own * 100) is None
    message = over_memory(os.getpid(), 1 << 20)
    assert message is not None and message.startswith("Blender used more than 1 MiB of memory (")
    assert tree_rss(2 ** 22 + 12345) == 0  # no such process
