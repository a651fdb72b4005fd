"""Estimates (issue 12, item 2) against what a hostile or careless client would try.

An estimate renders its sample frames, then waits (`estimated`) holding its files and its
samples' results until its owner resumes or cancels it. Each test drives the gateway app on
the real redis-server, a test worker rendering through the worker API: another client
resuming it (404, as for any job of someone else), resuming twice (the rest renders once),
cancelling it, an estimate of one frame, a still estimated (400), and an estimate nobody comes
back for (it expires with the farm's retention and lets go of everything).
"""
from __future__ import annotations

import dataclasses
import json

import pytest

from apitools import (bearer, claim, expect_error, fail_part, farm_of, get_job, put_result, register_worker,  # noqa: F401
                      scene_bytes, scene_sha, submit, unchanged, upload)
from farmtools import zip_bytes
from framefarm.gateway import cleanup, framestats, keys
from framefarm.gateway.app import create_app


def result(frames: list[int], seconds: float = 2.0) -> bytes:
    stats = {"frames": [{"frame": f, "seconds": seconds, "peak_rss_bytes": 5000} for f in frames], "load_seconds": 1.0}
    return zip_bytes({**{f"{f:04d}.png": b"frame" for f in frames}, framestats.STATS_NAME: json.dumps(stats).encode()})


def render_all(http, token: str, wid: str) -> list[list[int]]:
    """Claim and complete every part the farm hands out now; the frames of each."""
    done = []
    while (part := claim(http, token, wid)) is not None:
        assert put_result(http, token, part, result(part["frames"])).status_code == 200
        done.append(part["frames"])
    return done


def act(http, token: str, job_id: str, action: str):
    return http.post(f"/v1/jobs/{job_id}/{action}", headers=bearer(token))


@pytest.fixture
def estimated(http, tokens, scene_sha):
    """An estimate of frames 1-20 whose samples are in."""
    job = submit(http, tokens.client, scene_sha, frames="1-20", chunk=None, estimate=True)
    assert job["status"] == "queued" and job["estimate"] is None
    wid = register_worker(http, tokens.worker)
    assert sorted(render_all(http, tokens.worker, wid)) == [[1], [10], [20]]
    job = get_job(http, tokens.client, job["id"])
    assert job["status"] == "estimated" and job["estimate"]["samples"] == [1, 10, 20]
    return job, wid


def test_another_client_can_neither_see_nor_resume_nor_cancel_an_estimate(http, tokens, estimated):
    job, wid = estimated
    with unchanged(http):
        for action in ("resume", "cancel", "pause"):
            expect_error(act(http, tokens.client2, job["id"], action), 404, "not_found")
        expect_error(http.get(f"/v1/jobs/{job['id']}", headers=bearer(tokens.client2)), 404, "not_found")
    assert claim(http, tokens.worker, wid) is None  # still waiting for its owner


def test_resuming_twice_renders_the_rest_once(http, tokens, estimated):
    job, wid = estimated
    assert act(http, tokens.client, job["id"], "resume").status_code == 200
    again = act(http, tokens.client, job["id"], "resume")
    assert again.status_code == 200 and again.get_json()["status"] == "running"  # not paused: a no-op
    rest = render_all(http, tokens.worker, wid)
    frames = sorted(f for part in rest for f in part)
    assert frames == [f for f in range(1, 21) if f not in (1, 10, 20)]  # the samples are not rendered again
    view = get_job(http, tokens.client, job["id"])
    assert view["status"] == "assembling" and view["frames"]["done"] == 20
    assert expect_error(act(http, tokens.client, job["id"], "resume"), 409, "wrong_state")


def test_cancelling_an_estimate_ends_it_and_lets_go_of_its_files(http, tokens, estimated):
    job, wid = estimated
    resp = act(http, tokens.client, job["id"], "cancel")
    assert resp.status_code == 200 and resp.get_json()["status"] == "cancelled"
    expect_error(act(http, tokens.client, job["id"], "resume"), 409, "wrong_state")
    assert claim(http, tokens.worker, wid) is None
    farm = farm_of(http)
    assert job["id"] in cleanup.sweep(farm).released
    assert not list(farm.storage.list_prefix(keys.job_parts(job["id"])))


def test_an_estimate_of_one_frame_waits_then_assembles_on_resume(http, tokens, scene_sha):
    job = submit(http, tokens.client, scene_sha, frames="7", chunk=None, estimate=True)
    wid = register_worker(http, tokens.worker)
    assert render_all(http, tokens.worker, wid) == [[7]]
    view = get_job(http, tokens.client, job["id"])
    assert view["status"] == "estimated"
    est = view["estimate"]
    assert est["samples"] == [7] and est["frames_left"] == 0 and est["projected_seconds"] == 0
    resp = act(http, tokens.client, job["id"], "resume")
    assert resp.status_code == 200 and resp.get_json()["status"] == "assembling"
    assert claim(http, tokens.worker, wid) is None


def test_a_still_cannot_be_estimated(http, tokens, scene_sha):
    with unchanged(http):
        resp = http.post("/v1/jobs", json={"manifest": {"scene.blend": scene_sha}, "main": "scene.blend",
                                           "frames": "3", "still": True, "estimate": True}, headers=bearer(tokens.client))
        expect_error(resp, 400, "bad_estimate")
        resp = http.post("/v1/jobs", json={"manifest": {"scene.blend": scene_sha}, "main": "scene.blend",
                                           "frames": "1-3", "estimate": "yes"}, headers=bearer(tokens.client))
        expect_error(resp, 400, "bad_estimate")
        resp = http.post("/v1/jobs", json={"manifest": {"scene.blend": scene_sha}, "main": "scene.blend",
                                           "frames": "1-3", "order": "random"}, headers=bearer(tokens.client))
        expect_error(resp, 400, "bad_order")


def test_the_numbers_and_the_price(http, tokens, estimated):
    est = estimated[0]["estimate"]
    # 2 s a frame, 1 s to load, 17 frames left, one worker, parts cut to single frames at the end.
    assert est["seconds_per_frame"] == {"min": 2.0, "mean": 2.0, "max": 2.0} and est["peak_rss_bytes"] == 5000
    assert est["workers"] == 1 and est["frames_left"] == 17 and est["projected_seconds"] == 35.0
    assert est["cost"] is None and est["price_per_worker_hour"] is None and est["currency"] is None


def test_an_estimate_left_alone_expires_and_lets_go_of_everything(settings, tokens, scene_bytes):
    http = create_app(dataclasses.replace(settings, archive_retention_s=0, price_per_worker_hour=3.0,
                                          currency="EUR")).test_client()
    job = submit(http, tokens.client, upload(http, tokens.client, scene_bytes), frames="1-20", chunk=None,
                 estimate=True)
    wid = register_worker(http, tokens.worker)
    render_all(http, tokens.worker, wid)
    est = get_job(http, tokens.client, job["id"])["estimate"]
    assert (est["cost"], est["currency"], est["price_per_worker_hour"]) == (round(35 / 3600 * 3.0, 4), "EUR", 3.0)
    farm = farm_of(http)
    report = cleanup.sweep(farm)
    assert job["id"] in report.expired and job["id"] in report.released
    view = get_job(http, tokens.client, job["id"])
    assert view["status"] == "expired" and "not resumed" in view["error"]
    expect_error(act(http, tokens.client, job["id"], "resume"), 409, "wrong_state")
    assert not farm.redis.exists(keys.job_held(job["id"]))
    assert not list(farm.storage.list_prefix(keys.job_parts(job["id"])))
    assert not farm.redis.zscore(keys.ESTIMATED, job["id"])


def test_a_failed_estimate_retried_renders_its_samples_not_the_rest(http, tokens, scene_sha):
    job = submit(http, tokens.client, scene_sha, frames="1-20", chunk=None, estimate=True)
    wid = register_worker(http, tokens.worker)
    part = claim(http, tokens.worker, wid)
    assert fail_part(http, tokens.worker, part, "boom", deterministic=True).status_code == 200
    assert get_job(http, tokens.client, job["id"])["status"] == "failed"
    assert act(http, tokens.client, job["id"], "retry").status_code == 200
    other = register_worker(http, tokens.worker, name="other")  # the first one is kept away from it now
    assert sorted(render_all(http, tokens.worker, other)) == [[1], [10], [20]]
    assert get_job(http, tokens.client, job["id"])["status"] == "estimated"
