"""JobRequest.from_body: the rules of a submission that openapi.yaml cannot say.

The spec (checked by contract.py before a view runs) has already refused every body of the
wrong shape; what is left is a main file missing from the manifest, a range the FrameRange
refuses, more frames than the farm takes, a name taken from a main file's long name, and
manifest names longer in bytes than a worker's file system can create.
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


@pytest.mark.parametrize("fields, max_frames, status, code", [
    ({"main": "other.blend"}, 1000, 400, "bad_manifest"),
    ({"frames": "10-1"}, 1000, 400, "bad_frames"),
    ({"frames": {"start": 9, "end": 3}}, 1000, 400, "bad_frames"),
    ({"frames": "1-1001"}, 1000, 413, "too_many_frames"),
    ({"manifest": {"n" * 201 + ".blend": SHA}, "main": "n" * 201 + ".blend"}, 1000, 400, "bad_name"),
    # Names past 255 bytes no worker's file system can create (ENAMETOOLONG), counted in bytes:
    ({"manifest": {"shots/scene.blend": SHA, "t" * 252 + ".png": SHA}}, 1000, 400, "bad_manifest"),
    ({"manifest": {"shots/scene.blend": SHA, "é" * 126 + ".png": SHA}}, 1000, 400, "bad_manifest"),
    ({"manifest": {"shots/scene.blend": SHA, "/".join(["d" * 200] * 6): SHA}}, 1000, 400, "bad_manifest"),
], ids=["main-not-in-manifest", "reversed", "reversed-object", "too-many-frames", "long-main-name",
        "256-byte-name", "256-byte-name-in-utf8", "1205-byte-path"])
def test_what_the_spec_cannot_say_is_refused(fields, max_frames, status, code):
    with pytest.raises(ApiError) as refused:
        JobRequest.from_body(body(**fields), max_frames)
    assert (refused.value.status, refused.value.code) == (status, code)
    if code == "bad_manifest" and "manifest" in fields:
        assert "bytes" in refused.value.message, refused.value.message


def test_names_up_to_the_limits_are_accepted():
    longest = "/".join(["d" * 200] * 5) + "/" + "t" * 19  # 1024 bytes, every name at most 255
    fields = {"manifest": {"shots/scene.blend": SHA, "t" * 251 + ".png": SHA, "é" * 125 + ".png": SHA, longest: SHA}}
    assert len(longest.encode()) == 1024
    assert set(JobRequest.from_body(body(**fields), 1000).manifest) == set(fields["manifest"])
