"""The order a job hands out its frames in: preview-first (the default) or sequential.

Claims pop a job's parts lowest index first (lua/claim.lua), so the order is the order of the
parts' indexes, fixed here once when the job is split (jobs.create), and nothing downstream
changes: leases, retries, carving, paging and assembly go by index and read each part's own
frames. In **preview** order the artist sees the whole shot early: the first frames handed out
are the first, the last and the middle one, then the frames halfway between those, and so on
(a frame every N, then every N/2, ...), while parts stay contiguous where it costs nothing:

- Parts sized by time (no chunk: `carve` in lua/claim.lua cuts each part as it is claimed): at
  most `PREVIEW_PROBES` single frames (fewer for short jobs: one per 8 frames, at least 3) in
  that bisecting order, then the runs between them, themselves in bisecting order. A run is an
  ordinary part, cut to the target time from its front when claimed, its rest queued behind the
  job's other parts: every part after the probes is contiguous, and the runs fill in together.
  The probes are one-frame parts, the size every timed job's first parts have anyway (before a
  frame is measured, `first_part_frames`, 1). What is lost is at most `PREVIEW_PROBES` parts'
  overhead (a claim and an upload each; the scene is loaded once per slot by warm Blender
  whatever frames it renders), and each run ending in a part of its own: a job in preview order
  ends with a few more parts than in sequential order (docs/benchmarks.md, *Preview order*).
- A job with a chunk (given, or chosen by the farm): its chunks, each contiguous as asked, are
  handed out in bisecting order.
- **sequential** keeps the frames in order (the first part holds the first frames).
- A still is one frame split into pieces: the order does not apply.

An estimate (estimates.py) renders its samples first: the first, last and middle frame (fewer
for fewer frames) become the job's first parts, single frames in either order, and the rest
of the job is split around them as above; `Plan.samples` says how many parts that is.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice

from framefarm.common.frameset import FrameRange, PartSpan

ORDERS = ("preview", "sequential")
PREVIEW_PROBES = 17  # first, last, then bisecting down to a frame every 1/16th of the shot
SAMPLES = 3  # an estimate's sample frames: first, last, middle


@dataclass(frozen=True)
class Plan:
    spans: list[PartSpan]  # indexed in the order they are handed out
    samples: int  # the first `samples` parts are an estimate's samples (0: not an estimate)


def bisecting(n: int) -> Iterator[int]:
    """Positions 0..n-1: first, last, middle, then the middles of each gap, level by level."""
    if n <= 0:
        return
    yield 0
    if n == 1:
        return
    yield n - 1
    gaps = deque([(0, n - 1)])
    while gaps:
        lo, hi = gaps.popleft()
        if hi - lo < 2:
            continue
        mid = (lo + hi) // 2
        yield mid
        gaps.append((lo, mid))
        gaps.append((mid, hi))


def probe_count(frames: int, max_parts: int) -> int:
    """Single-frame parts a timed job in preview order starts with: with the runs between them
    (one fewer), at most half the farm's parts limit, so the cut parts have room (min_frames)."""
    return max(1, min(frames, PREVIEW_PROBES, max(SAMPLES, frames // 8), (max_parts // 2 + 1) // 2))


def min_frames(frames: int, spans: int, max_parts: int) -> int:
    """The fewest frames a claim may cut from a timed job's part (lua/claim.lua) so the job stays
    within `max_parts`: each of its `spans` runs ends in at most one short part, so the rest of
    the parts are held to frames / (max_parts - spans)."""
    room = max_parts - spans if spans > 1 else max_parts
    return max(1, -(-frames // max(1, room)))


def plan(fr: FrameRange, chunk: int | None, order: str, *, estimate: bool = False,
         max_parts: int = 100_000) -> Plan:
    """The job's parts in hand-out order. `chunk` None: parts sized by time (each run one part,
    cut as claimed); else every part holds at most `chunk` frames."""
    n = fr.count
    if estimate:
        probes = list(islice(bisecting(n), SAMPLES))
    elif order == "preview" and chunk is None:
        probes = list(islice(bisecting(n), probe_count(n, max_parts)))
    else:
        probes = []
    runs: list[tuple[int, int]] = []  # (first position, count) of the frames between probes
    prev = -1
    for pos in sorted(probes) + [n]:
        if pos - prev > 1:
            runs.append((prev + 1, pos - prev - 1))
        prev = pos
    size = chunk or n
    pieces = [(first + k, min(size, count - k)) for first, count in runs for k in range(0, count, size)]
    if order == "preview":
        pieces = [pieces[i] for i in bisecting(len(pieces))]
    spans = [(p, 1) for p in probes] + pieces
    return Plan([PartSpan(i, fr.start + first * fr.step, count, fr.step) for i, (first, count) in enumerate(spans)],
                len(probes) if estimate else 0)
