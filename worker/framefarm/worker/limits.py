"""Limits on one Blender process: the longest a frame may take, and the most memory it may use.

Heartbeats renew a part's lease for as long as Blender runs, so without these a scene
that never finishes a frame, or grows until the machine swaps, holds a worker forever.

Time: a job's `max_frame_seconds`. The clock of a frame starts when Blender starts (for
the first frame: loading the scene counts, so a scene that hangs while loading is caught
too) and restarts each time Blender reports a saved frame (its `Saved: '...'` line).

Memory: the worker's `--max-blender-memory`, checked by watching the resident memory of
Blender's whole process tree (the sandbox's processes included) every tenth of a second.
Why not an rlimit: RLIMIT_AS counts address space Blender reserves but never touches
(thread stacks, allocator arenas, TBB, GPU driver mappings: several GiB on an idle 3.4),
so a ceiling near the real use makes Blender fail inside malloc, with a crash or a vague
"out of memory" that says nothing useful, while a generous one stops nothing. RLIMIT_RSS
is not enforced by Linux, and cgroups are not writable in most containers. Watching RSS
counts what Blender really uses and lets the worker say so in plain words; a spike faster
than a tenth of a second can overshoot briefly before Blender is killed.
"""
from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

_PAGE = os.sysconf("SC_PAGE_SIZE")
_FRAME_LINE = re.compile(r"^Fra:\s*(\d+)\b")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B?|B)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


@dataclass(frozen=True)
class Limits:
    """The limits one part's Blender processes run under; None: no limit."""

    max_frame_s: float | None = None
    max_memory: int | None = None  # bytes of resident memory, the whole process tree


NO_LIMITS = Limits()


def parse_size(text: str) -> int:
    """'2GiB', '2G', '512M', '1.5 GiB' or plain bytes -> bytes (binary units: G is GiB)."""
    match = _SIZE.match(text)
    if not match:
        raise ValueError(f"a size looks like 2GiB, 512MiB or 1073741824, not {text!r}")
    unit = (match[2] or "").upper().rstrip("B").rstrip("I") or ("B" if match[2] else "")
    return int(float(match[1]) * _UNITS[unit])


def format_size(size: int) -> str:
    """Bytes as the user would write them: 2 GiB, 512 MiB, 1.5 GiB."""
    for unit, scale in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            value = size / scale
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{size} bytes"


def format_seconds(seconds: float) -> str:
    return f"{seconds:g} s"


@dataclass
class FrameStat:
    """What one frame cost: `_meta/stats.json`'s entries (docs/architecture.md)."""

    frame: int
    seconds: float
    peak_rss_bytes: int

    def as_json(self) -> dict:
        return {"frame": self.frame, "seconds": round(self.seconds, 4), "peak_rss_bytes": self.peak_rss_bytes}


class FrameClock:
    """Which frame a Blender process is on and since when, from its output lines; and,
    for the part's stats, each saved frame's time and the peak memory while it rendered."""

    def __init__(self, frames: list[int]) -> None:
        self.frames = frames
        self.saved = 0
        self.frame: int | None = None  # from Blender's last `Fra:` line
        self.since = time.monotonic()
        self.started = self.since
        self.loaded: float | None = None  # when Blender first said `Fra:`: the scene was loaded
        self.peak = 0  # the process tree's resident memory, highest since the last saved frame
        self.rss = 0
        self.stats: list[FrameStat] = []

    def line(self, text: str) -> None:
        """Called with every line Blender prints (from its reader thread)."""
        if text.startswith("Saved: '"):  # a frame; a compositor File Output prints its path unquoted
            frame, now = self.current(), time.monotonic()
            # A frame's time starts when the previous one was saved, or when loading ended.
            began = self.since if self.saved or self.loaded is None else self.loaded
            if self.stats and self.stats[-1].frame == frame:  # a second view of the same frame
                self.stats[-1].seconds += now - began
                self.stats[-1].peak_rss_bytes = max(self.stats[-1].peak_rss_bytes, self.peak)
            else:
                self.stats.append(FrameStat(frame, now - began, self.peak))
            self.saved += 1
            self.frame = None
            self.since = now
            self.peak = self.rss
            return
        match = _FRAME_LINE.match(text)
        if match:
            self.frame = int(match[1])
            if self.loaded is None:
                self.loaded = time.monotonic()

    def memory(self, used: int) -> None:
        """The process tree's resident memory now (the watching thread polls it)."""
        self.rss = used
        self.peak = max(self.peak, used)

    @property
    def load_seconds(self) -> float:
        """From the process's start to its first frame line: loading the scene (0 when unseen)."""
        return 0.0 if self.loaded is None else self.loaded - self.started

    def current(self) -> int:
        if self.frame is not None:
            return self.frame
        return self.frames[min(self.saved, len(self.frames) - 1)]

    def overdue(self, limit: float | None) -> str | None:
        """The reason to stop Blender when the current frame ran past `limit` seconds."""
        if limit is None or time.monotonic() - self.since <= limit:
            return None
        return f"frame {self.current()} took longer than {format_seconds(limit)} (the job's max_frame_seconds)"


def tree_pids(root: int) -> list[int]:
    """Process `root` and every descendant, `root` first (those that exit meanwhile are left out)."""
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in found:
            continue
        try:
            for task in os.scandir(f"/proc/{pid}/task"):
                todo += [int(c) for c in Path(task.path, "children").read_text().split()]
        except (OSError, ValueError):
            continue  # exited while we looked
        found.append(pid)
    return found


def tree_rss(root: int) -> int:
    """Resident memory of process `root` and every descendant, in bytes (0 once gone)."""
    total = 0
    for pid in tree_pids(root):
        try:
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * _PAGE
        except (OSError, ValueError, IndexError):
            continue  # exited while we looked
    return total


def over_memory(root: int, limit: int | None, used: int | None = None) -> str | None:
    """The reason to stop Blender when its process tree holds more than `limit` bytes
    (`used`: its resident memory when just measured)."""
    if limit is None:
        return None
    used = tree_rss(root) if used is None else used
    if used <= limit:
        return None
    return (f"Blender used more than {format_size(limit)} of memory ({format_size(used)} when stopped; "
            "the worker's --max-blender-memory)")
