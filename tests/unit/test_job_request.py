"""JobRequest.from_body: the rules of a submission that openapi.yaml cannot say.

The spec (checked by contract.py before a view runs) has already refused every body of the
wrong shape; what is left is a main file missing from the manifest, a range the FrameRange
refuses, more frames than the farm takes, and a name taken from a main file's long name.
"""
from __future__ import annotations

import pytest

from framefarm.gateway.errors import ApiError
from framefarm.gateway.jobs import JobRequest

SHA = "a" * 64


def body(**fields):
    return {"manifest": {"shots/scene.blend": SHA}, "main": "shots/scene.blend", "frames": "1-10", **fields}


def test_a_body_the_spec_accepted_becomes_a_typed_request():
    req = JobRequest.from_body(body(frames={"start": 3, "end": 9}, step=2, priority=5, chunk=None), 1000)
    assert (req.frames.frames(), req.name, req.priority, req.chunk) == ([3, 5, 7, 9], "scene.blend", 5, None)
    assert JobRequest.from_body(body(name=None, chunk=4), 1000).chunk == 4
    assert JobRequest.from_body(body(name=""), 1000).name == "scene.blend"
    assert JobRequest.from_body(body(name="Shot 1"), 1000).name == "Shot 1"


@pytest.mark.parametrize("fields, max_frames, code", [
    ({"main": "other.blend"}, 1000, "bad_manifest"),
    ({"frames": "10-1"}, 1000, "bad_frames"),
    ({"frames": {"start": 9, "end": 3}}, 1000, "bad_frames"),
    ({"frames": "1-1001"}, 1000, "too_many_frames"),
    ({"manifest": {"n" * 201 + ".blend": SHA}, "main": "n" * 201 + ".blend"}, 1000, "bad_name"),
], ids=["main-not-in-manifest", "reversed", "reversed-object", "too-many-frames", "long-main-name"])
def test_what_the_spec_cannot_say_is_refused(fields, max_frames, code):
    with pytest.raises(ApiError) as refused:
        JobRequest.from_body(body(**fields), max_frames)
    assert (refused.value.status, refused.value.code) == (400, code)
