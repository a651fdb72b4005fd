"""A job's finishing task, through the gateway's HTTP API (gateway/finishing.py).

When a job's last frame part is counted, the job gets one more part that only a worker
advertising its kind may claim; it fetches the frame parts' results through its lease,
and its own result (plain files) goes into the final zip, with or without the frames.
The finishing part is an ordinary part: a lease that runs out requeues it, stale tokens
change nothing. Real workers with ffmpeg run it in tests/system/test_movies.py.
"""
from __future__ import annotations

import io
import zipfile

import pytest

from apitools import (bearer, claim, expect_error, farm_of, get_job, lease, put_result, register_worker, scene_bytes,
                      scene_sha, submit, unchanged)
from farmtools import wait_for, zip_bytes
from framefarm.gateway import archive, keys, scheduling

__all__ = ["scene_bytes", "scene_sha"]  # fixtures, imported for pytest

ENCODE = {"kind": "encode", "keep_frames": False, "options": {"video": "preview"}}


def register(http, token: str, *caps: str, name: str = "w") -> str:
    resp = http.post("/v1/workers", json={"name": name, "blender_version": "3.4.1", "capabilities": list(caps)},
                     headers=bearer(token))
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()["id"]


def render_all(http, token: str, wid: str) -> dict | None:
    """Claim and complete every frame part there is for this worker; returns the finishing part
    it claims next, if it may (None when there is nothing else for it)."""
    while (part := claim(http, token, wid)) is not None and part["kind"] == "render":
        assert put_result(http, token, part).status_code == 200
    return part


def archive_names(http, job_id: str) -> list[str]:
    farm = farm_of(http)
    assert archive.assemble(farm, job_id)
    with farm.storage.open_read(keys.archive(job_id)) as fh, zipfile.ZipFile(io.BytesIO(fh.read())) as zf:
        return sorted(zf.namelist())


@pytest.mark.parametrize("keep", [False, True])
def test_the_finishing_part_waits_for_a_capable_worker_and_its_result_is_the_zips(http, tokens, scene_sha, keep):
    job = submit(http, tokens.client, scene_sha, finish={**ENCODE, "keep_frames": keep})
    assert job["finish"] == {"kind": "encode", "keep_frames": keep, "options": {"video": "preview"},
                             "state": "waiting", "attempts": 0, "error": None}
    plain = register(http, tokens.worker, name="plain")
    assert render_all(http, tokens.worker, plain) is None  # it cannot encode

    seen = get_job(http, tokens.client, job["id"])
    assert seen["status"] == "running" and seen["frames"]["done"] == 4 and seen["parts"]["done"] == 2
    assert seen["finish"]["state"] == "queued"
    assert "task waits for a worker that can encode" in seen["waiting_reason"]

    encoder = register(http, tokens.worker, "encode", name="encoder")
    assert get_job(http, tokens.client, job["id"])["waiting_reason"] is None
    part = claim(http, tokens.worker, encoder)
    assert part["kind"] == "encode" and part["finish"] == "encode" and part["options"] == {"video": "preview"}
    assert part["frames"] == [1, 2, 3, 4]

    resp = http.get(f"/v1/parts/{part['id']}/inputs", headers={**bearer(tokens.worker), **lease(part)})
    assert resp.status_code == 200, resp.get_json()
    listed = resp.get_json()["inputs"]
    assert [(i["index"], i["span"]["start"], i["span"]["count"], i["url"]) for i in listed] == \
        [(0, 1, 2, None), (1, 3, 2, None)]
    got = http.get(f"/v1/parts/{part['id']}/inputs/1", headers={**bearer(tokens.worker), **lease(part)})
    assert got.status_code == 200
    assert sorted(zipfile.ZipFile(io.BytesIO(got.data)).namelist()) == ["0003.png", "0004.png"]
    expect_error(http.get(f"/v1/parts/{part['id']}/inputs/2", headers={**bearer(tokens.worker), **lease(part)}),
                 404)

    assert put_result(http, tokens.worker, part, zip_bytes({"test.mp4": b"a movie"})).get_json()["job_status"] \
        == "assembling"
    expected = ["0001.png", "0002.png", "0003.png", "0004.png"] if keep else []
    assert archive_names(http, job["id"]) == sorted([*expected, "test.mp4"])
    done = get_job(http, tokens.client, job["id"])
    assert done["status"] == "done" and done["finish"]["state"] == "done"


def test_a_render_part_has_no_inputs_and_a_job_without_finishing_assembles_at_once(http, tokens, scene_sha):
    job = submit(http, tokens.client, scene_sha)
    assert job["finish"] is None
    wid = register(http, tokens.worker, "encode")
    part = claim(http, tokens.worker, wid)
    assert part["kind"] == "render" and part["finish"] is None and part["options"] is None
    expect_error(http.get(f"/v1/parts/{part['id']}/inputs", headers={**bearer(tokens.worker), **lease(part)}),
                 409, "not_finishing")
    assert put_result(http, tokens.worker, part).status_code == 200
    last = claim(http, tokens.worker, wid)
    assert put_result(http, tokens.worker, last).get_json()["job_status"] == "assembling"


@pytest.mark.parametrize("name", ["../escape.mp4", "a/b.mp4", ".hidden", "-rf", "movie.mp4\n", "x" * 200])
def test_a_finishing_result_must_be_plain_file_names(http, tokens, scene_sha, name):
    submit(http, tokens.client, scene_sha, finish=ENCODE)
    wid = register(http, tokens.worker, "encode")
    part = render_all(http, tokens.worker, wid)
    assert part["kind"] == "encode"
    with unchanged(http):
        expect_error(put_result(http, tokens.worker, part, zip_bytes({name: b"x"})), 400, "bad_result")
    with unchanged(http):
        expect_error(put_result(http, tokens.worker, part, zip_bytes({})), 400, "bad_result")


def test_a_finishing_result_is_bounded_like_the_jobs_frames(settings, tokens, scene_sha, redis_client):
    import dataclasses

    from framefarm.gateway.app import create_app
    small = create_app(dataclasses.replace(settings, max_frame_bytes=1000), background=False).test_client()
    job = submit(small, tokens.client, scene_sha, finish=ENCODE)
    wid = register(small, tokens.worker, "encode")
    part = render_all(small, tokens.worker, wid)
    # Four frames of at most 1000 bytes: a "movie" of 4001 bytes is refused, and the attempt fails.
    err = expect_error(put_result(small, tokens.worker, part, zip_bytes({"m.mp4": b"\0" * 4001})), 413,
                       "result_too_large")
    assert "queued again" in err["message"]
    again = claim(small, tokens.worker, wid)
    assert again["kind"] == "encode" and again["attempts"] == 1
    assert put_result(small, tokens.worker, again, zip_bytes({"m.mp4": b"\0" * 4000})).status_code == 200
    assert get_job(small, tokens.client, job["id"])["status"] == "assembling"


def test_an_expired_finishing_lease_goes_to_another_capable_worker(http, tokens, scene_sha):
    job = submit(http, tokens.client, scene_sha, finish=ENCODE)
    first = register(http, tokens.worker, "encode", name="first")
    part = render_all(http, tokens.worker, first)
    second = register(http, tokens.worker, "encode", name="second")
    farm = farm_of(http)
    # The first encoder goes silent: its lease runs out on Redis's clock (lease_s is 2 s in tests).
    wait_for(lambda: scheduling.reap(farm) > 0, 10, "the lease to expire")
    again = claim(http, tokens.worker, second)
    assert again["id"] == part["id"] and again["kind"] == "encode" and again["attempts"] == 1
    expect_error(put_result(http, tokens.worker, part, zip_bytes({"m.mp4": b"late"})), 409, "stale_lease")
    assert put_result(http, tokens.worker, again, zip_bytes({"m.mp4": b"movie"})).status_code == 200
    assert archive_names(http, job["id"]) == ["m.mp4"]


def test_a_cancelled_job_abandons_its_finishing_part(http, tokens, scene_sha):
    job = submit(http, tokens.client, scene_sha, finish=ENCODE)
    wid = register(http, tokens.worker, "encode")
    part = render_all(http, tokens.worker, wid)
    assert http.post(f"/v1/jobs/{job['id']}/cancel", headers=bearer(tokens.client)).status_code == 200
    held = [{"id": part["id"], "token": part["token"]}]
    resp = http.post(f"/v1/workers/{wid}/heartbeat", json={"parts": held}, headers=bearer(tokens.worker))
    assert resp.get_json()["abandon"] == [part["id"]]
    assert get_job(http, tokens.client, job["id"])["status"] == "cancelled"


@pytest.mark.parametrize("finish", [
    {"kind": "transcode"}, {"kind": "encode", "options": {"video": "vhs"}}, {"kind": "encode", "extra": 1},
    {"kind": "encode", "keep_frames": "yes"}, {"kind": "encode", "options": {f"k{i}": i for i in range(17)}},
    {"kind": "encode", "options": {"x": "y" * 201}}, "encode",
])
def test_a_bad_finish_is_refused_with_its_reason(http, tokens, scene_sha, finish):
    from apitools import job_body
    with unchanged(http):
        resp = http.post("/v1/jobs", json=job_body(scene_sha, finish=finish), headers=bearer(tokens.client))
        expect_error(resp, 400)


def test_a_worker_with_an_unknown_capability_is_refused(http, tokens):
    resp = http.post("/v1/workers", json={"blender_version": "3.4", "capabilities": ["teleport"]},
                     headers=bearer(tokens.worker))
    expect_error(resp, 400)


def test_retry_runs_a_failed_finishing_task_again(http, tokens, scene_sha):
    """A job whose frames are in but whose finishing task used up its attempts fails; retry
    queues the task again (not only the frame parts), and a capable worker finishes the job."""
    job = submit(http, tokens.client, scene_sha, finish=ENCODE)
    wid = register(http, tokens.worker, "encode")
    part = render_all(http, tokens.worker, wid)
    assert part is not None and part["kind"] == "encode"
    resp = http.post(f"/v1/parts/{part['id']}/failure", json={"message": "ffmpeg crashed", "deterministic": True},
                     headers={**bearer(tokens.worker), **lease(part)})
    assert resp.get_json()["outcome"] == "failed"
    assert get_job(http, tokens.client, job["id"])["status"] == "failed"
    resp = http.post(f"/v1/jobs/{job['id']}/retry", headers=bearer(tokens.client))
    assert resp.status_code == 200, resp.get_json()
    again = claim(http, tokens.worker, wid)
    assert again is not None and again["kind"] == "encode" and again["id"] == part["id"]
    assert put_result(http, tokens.worker, again, zip_bytes({"movie.mp4": b"movie"})).status_code == 200
    assert archive_names(http, job["id"]) == ["movie.mp4"]
