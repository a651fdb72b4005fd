"""Frame requests and how they split into parts.

The seed system lost frames whenever a range did not start at 1, because it split
by counting from 1. Here a request is a plain arithmetic progression
(start, end, step) and a part is a contiguous slice of that progression, so the
parts cover exactly the requested frames, disjoint and in order, for any range.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

# Blender's own limits for scene frames (MAXFRAME); negative frames are not
# accepted because Blender names such files inconsistently across versions.
MIN_FRAME = 0
MAX_FRAME = 1048574

# Digits are bounded: int() refuses strings of thousands of digits with a ValueError.
_RANGE = re.compile(r"\s*(\d{1,9})\s*(?:(?:-|\.\.)\s*(\d{1,9})\s*)?")


class FrameSpecError(ValueError):
    """A frame request a user typed or sent is not valid; the message says why."""


@dataclass(frozen=True)
class FrameRange:
    start: int
    end: int
    step: int = 1

    def __post_init__(self) -> None:
        for name in ("start", "end", "step"):
            if not isinstance(getattr(self, name), int) or isinstance(getattr(self, name), bool):
                raise FrameSpecError(f"{name} must be a whole number")
        if self.step < 1:
            raise FrameSpecError(f"step must be 1 or more, got {self.step}")
        if self.start < MIN_FRAME or self.end > MAX_FRAME:
            raise FrameSpecError(f"frames must lie between {MIN_FRAME} and {MAX_FRAME}")
        if self.end < self.start:
            raise FrameSpecError(f"the range {self.start}-{self.end} ends before it starts")

    @property
    def count(self) -> int:
        return (self.end - self.start) // self.step + 1

    @property
    def last(self) -> int:
        """The last frame actually rendered (end may not lie on the step)."""
        return self.start + (self.count - 1) * self.step

    def frames(self) -> list[int]:
        return list(range(self.start, self.last + 1, self.step))

    def text(self) -> str:
        """'A-B' (or 'A'), as parse_frames reads it back; the step travels separately."""
        return str(self.start) if self.start == self.end else f"{self.start}-{self.end}"


def parse_frames(text: str, step: int = 1) -> FrameRange:
    """Parse 'A-B', 'A..B' or a single frame 'A' into a FrameRange."""
    match = _RANGE.fullmatch(text or "")
    if not match:
        raise FrameSpecError(f"cannot read frames {text!r}: expected A-B (for example 1-250) or a single frame")
    start = int(match.group(1))
    end = int(match.group(2)) if match.group(2) is not None else start
    return FrameRange(start, end, step)


@dataclass(frozen=True)
class PartSpan:
    """One part: `count` frames of the request, starting at `start`, `step` apart.

    The one value that says which frames a part holds, from the split (here) through
    Redis, the claim answer and the worker's render to the job's part list. Nothing
    else rebuilds a part's frames from raw numbers.
    """

    index: int
    start: int
    count: int
    step: int

    def __post_init__(self) -> None:
        if self.index < 0 or self.count < 1 or self.step < 1 or self.start < MIN_FRAME or self.end > MAX_FRAME:
            raise FrameSpecError(f"not a valid part: {self!r}")

    @property
    def end(self) -> int:
        return self.start + (self.count - 1) * self.step

    def frames(self) -> list[int]:
        return list(range(self.start, self.end + 1, self.step))

    def to_json(self) -> dict[str, int]:
        """The wire form (the claim answer's `span`, the job's `part_list` entries)."""
        return {"index": self.index, "start": self.start, "count": self.count, "step": self.step}

    @classmethod
    def from_json(cls, data: object) -> "PartSpan":
        """Read the wire form back; anything else is a FrameSpecError, never a KeyError."""
        if not isinstance(data, dict):
            raise FrameSpecError(f"a part span must be an object, got {data!r}")
        values = {}
        for name in ("index", "start", "count", "step"):
            value = data.get(name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise FrameSpecError(f"a part span's {name} must be a whole number, got {value!r}")
            values[name] = value
        return cls(**values)


def part_count(frames: FrameRange, chunk: int) -> int:
    if chunk < 1:
        raise FrameSpecError(f"frames per part must be 1 or more, got {chunk}")
    return math.ceil(frames.count / chunk)


def part_span(frames: FrameRange, chunk: int, index: int) -> PartSpan:
    """The index-th part, computed without listing the others."""
    first = index * chunk
    count = min(chunk, frames.count - first)
    if index < 0 or count <= 0:
        raise IndexError(index)
    return PartSpan(index, frames.start + first * frames.step, count, frames.step)


def split(frames: FrameRange, chunk: int) -> list[PartSpan]:
    return [part_span(frames, chunk, i) for i in range(part_count(frames, chunk))]


# Blender needs about a second to start and load a small scene; parts shorter
# than this many frames spend more time starting Blender than rendering.
MIN_AUTO_CHUNK = 5
# Aim for a few parts per worker so a slow machine does not hold up the end.
PARTS_PER_WORKER = 3


def auto_chunk(frame_count: int, live_workers: int) -> int:
    """Frames per part when the user did not choose: every worker gets work,
    without parts so small that Blender's start-up dominates."""
    workers = max(1, live_workers)
    chunk = math.ceil(frame_count / (workers * PARTS_PER_WORKER))
    # Never below the start-up floor, unless that would leave a worker idle; then
    # the largest even split that still gives every worker a part.
    busy = max(1, min(workers, frame_count))
    floor = MIN_AUTO_CHUNK if math.ceil(frame_count / MIN_AUTO_CHUNK) >= busy else frame_count // busy
    return max(1, chunk, floor)
