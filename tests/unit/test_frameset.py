"""Frame requests and their split into parts: properties that must hold for any range.

The seed system lost frames when a range did not start at 1; these properties
(every requested frame in exactly one part, in order) rule that out for any
start, end, step and chunk, not just the examples someone thought of.
"""
from __future__ import annotations

import math

import pytest
from hypothesis import given, strategies as st

from framefarm.common import frameset
from framefarm.common.frameset import (MAX_FRAME, MIN_AUTO_CHUNK, FrameRange, FrameSpecError, auto_chunk,
                                       parse_frames, part_count, part_span, split)


@st.composite
def ranges(draw) -> FrameRange:
    start = draw(st.integers(0, MAX_FRAME))
    end = draw(st.integers(start, min(MAX_FRAME, start + 5000)))
    return FrameRange(start, end, draw(st.integers(1, 400)))


@given(ranges(), st.integers(1, 300))
def test_parts_cover_exactly_the_requested_frames_disjoint_and_in_order(fr, chunk):
    parts = split(fr, chunk)
    assert [p.index for p in parts] == list(range(len(parts))) == list(range(part_count(fr, chunk)))
    flat = [f for p in parts for f in p.frames()]
    assert flat == list(range(fr.start, fr.end + 1, fr.step)) == fr.frames()
    assert len(flat) == len(set(flat)) == fr.count
    assert all(1 <= p.count <= chunk and p.step == fr.step for p in parts)
    assert all(p.count == chunk for p in parts[:-1]), "only the last part may be short"
    assert parts[-1].end == fr.last <= fr.end


@given(ranges(), st.integers(1, 300), st.data())
def test_one_part_computed_alone_equals_that_part_of_the_split(fr, chunk, data):
    n = part_count(fr, chunk)
    index = data.draw(st.integers(0, n - 1))
    assert part_span(fr, chunk, index) == split(fr, chunk)[index]
    for outside in (-1, n):
        with pytest.raises(IndexError):
            part_span(fr, chunk, outside)


@pytest.mark.parametrize("text, expected", [
    ("1-250", (1, 250)), ("0..10", (0, 10)), (" 7 ", (7, 7)), ("10 - 20", (10, 20)), ("5-5", (5, 5)),
])
def test_frame_specs_parse(text, expected):
    assert (parse_frames(text).start, parse_frames(text).end) == expected


@pytest.mark.parametrize("text", [
    "10-1", "a-b", "", "-5", "1-2-3", "1,2", "1.5-3", f"0-{MAX_FRAME + 1}", "1-" + "9" * 5000, "²-3",
], ids=lambda text: text if len(text) < 20 else f"{len(text)} characters")
def test_bad_frame_specs_raise_a_readable_error(text):
    with pytest.raises(FrameSpecError) as err:
        parse_frames(text)
    assert str(err.value)


@pytest.mark.parametrize("args", [(1, 4, 0), (1, 4, -1), (-1, 4, 1), (1, 4, True), (1.0, 4, 1), (None, 4, 1)])
def test_bad_ranges_raise_a_readable_error(args):
    with pytest.raises(FrameSpecError):
        FrameRange(*args)


def test_a_chunk_below_one_is_refused():
    with pytest.raises(FrameSpecError):
        part_count(FrameRange(1, 10), 0)


@given(st.integers(1, 100_000), st.integers(0, 500))
def test_auto_chunk_gives_every_worker_work_without_needlessly_small_parts(frames, workers):
    chunk = auto_chunk(frames, workers)
    busy = min(max(1, workers), frames)  # workers that can get a part at all
    assert chunk >= 1
    assert math.ceil(frames / chunk) >= busy, "a worker would sit idle"
    if chunk < MIN_AUTO_CHUNK:
        assert math.ceil(frames / MIN_AUTO_CHUNK) < busy, "parts of the minimum size would keep everyone busy"


def test_auto_chunk_aims_for_a_few_parts_per_worker_on_long_ranges():
    assert auto_chunk(3000, 10) == 3000 // (10 * frameset.PARTS_PER_WORKER)
    assert auto_chunk(4, 3) == 1 and auto_chunk(9, 2) == 5 and auto_chunk(4, 2) == 2
