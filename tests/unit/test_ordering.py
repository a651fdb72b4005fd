"""The order a job's parts are handed out in (gateway/ordering.py), without Redis."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from framefarm.common.frameset import FrameRange, split
from framefarm.gateway import ordering


def frames_of(plan: ordering.Plan) -> list[int]:
    return [f for span in plan.spans for f in span.frames()]


def test_bisecting_is_first_last_middle_then_each_gaps_middle():
    assert list(ordering.bisecting(9)) == [0, 8, 4, 2, 6, 1, 3, 5, 7]
    assert list(ordering.bisecting(1)) == [0] and list(ordering.bisecting(2)) == [0, 1]


@given(n=st.integers(0, 3000))
def test_bisecting_visits_every_position_once(n):
    assert sorted(ordering.bisecting(n)) == list(range(n))


@given(count=st.integers(1, 600), step=st.integers(1, 7), chunk=st.one_of(st.none(), st.integers(1, 50)),
       order=st.sampled_from(ordering.ORDERS), estimate=st.booleans())
def test_every_plan_covers_every_frame_once_in_contiguous_parts(count, step, chunk, order, estimate):
    fr = FrameRange(10, 10 + (count - 1) * step, step)
    plan = ordering.plan(fr, chunk, order, estimate=estimate)
    assert sorted(frames_of(plan)) == fr.frames()
    assert [s.index for s in plan.spans] == list(range(len(plan.spans)))
    assert all(s.count <= (chunk or count) for s in plan.spans[plan.samples:])
    if estimate:  # the samples: first, last, middle, single frames, first in line
        assert [s.start for s in plan.spans[:plan.samples]] == [fr.frames()[i] for i in
                                                                list(ordering.bisecting(count))[:3]]
        assert all(s.count == 1 for s in plan.spans[:plan.samples])


@given(count=st.integers(1, 600), chunk=st.integers(1, 50))
def test_sequential_is_todays_split(count, chunk):
    fr = FrameRange(1, count)
    assert ordering.plan(fr, chunk, "sequential").spans == split(fr, chunk)
    assert ordering.plan(fr, None, "sequential").spans == split(fr, count)


def test_a_timed_preview_starts_with_single_frames_then_runs():
    plan = ordering.plan(FrameRange(1, 100), None, "preview")
    starts = [(s.start, s.count) for s in plan.spans]
    assert starts[:5] == [(1, 1), (100, 1), (50, 1), (25, 1), (75, 1)]
    assert len([s for s in plan.spans if s.count == 1]) == ordering.probe_count(100, 10_000) == 12


@pytest.mark.parametrize("frames, max_parts", [(1000, 7), (100_000, 10_000), (50, 5), (17, 4)])
def test_timed_parts_stay_within_the_parts_limit(frames, max_parts):
    """Cut as claim.lua cuts (never below min_frames), a timed preview job stays within the limit."""
    plan = ordering.plan(FrameRange(1, frames), None, "preview", max_parts=max_parts)
    least = ordering.min_frames(frames, len(plan.spans), max_parts)
    parts = sum(-(-s.count // least) for s in plan.spans)  # the worst case: every cut at the minimum
    assert parts <= max_parts
