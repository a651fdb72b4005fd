"""Parts sized by time, claims that prefer a held job, and a result with the next claim (issue 10).

A job without a chunk is written as one part; each claim cuts the part it pops to fit the job's
target duration at the measured time per frame (the workers' `_meta/stats.json`, else the
leases' wall time; before any measurement, the farm's first-part size) and queues the rest.
These tests drive the real gateway app on the real redis-server and check that the cut keeps
every guarantee: every frame rendered once, progress, paging, retries, cancel, the parts limit.
"""
from __future__ import annotations

import dataclasses
import io
import json
import zipfile

import pytest

from apitools import (bearer, claim, expect_error, farm_of, fail_part, frames_zip, get_job, lease, put_result,
                      register_worker, scene_bytes, submit, upload)  # noqa: F401
from farmtools import zip_bytes
from framefarm.gateway import archive, framestats, keys
from framefarm.gateway.app import create_app


def app_with(settings, **changes):
    return create_app(dataclasses.replace(settings, **changes)).test_client()


@pytest.fixture
def http(settings):
    return app_with(settings)


@pytest.fixture
def sha(http, tokens, scene_bytes):
    return upload(http, tokens.client, scene_bytes)


def result_with(frames: list[int], seconds: float) -> bytes:
    stats = {"frames": [{"frame": f, "seconds": seconds, "peak_rss_bytes": 1000} for f in frames],
             "load_seconds": 1.0}
    return zip_bytes({**{f"{f:04d}.png": b"frame" for f in frames}, framestats.STATS_NAME: json.dumps(stats).encode()})


def put_next(http, token: str, part: dict, data: bytes, **params):
    return http.put(f"/v1/parts/{part['id']}/result", data=data, query_string=params,
                    headers={**bearer(token), **lease(part)})


def test_a_job_without_a_chunk_starts_small_then_fills_its_target(http, tokens, sha):
    job = submit(http, tokens.client, sha, frames="1-1000", chunk=None, target_part_seconds=10, order="sequential")
    assert job["parts"] == {"total": 1, "done": 0, "chunk": 1} and job["target_part_seconds"] == 10
    wids = [register_worker(http, tokens.worker, name=f"w{n}") for n in range(2)]
    first = claim(http, tokens.worker, wids[0])
    assert first["frames"] == [1] and first["seconds_per_frame"] is None
    assert first["frames_left"] == 1000  # the job's work left, which a warm worker weighs its processes by
    second = claim(http, tokens.worker, wids[1])  # nothing measured yet: small again
    assert second["frames"] == [2] and second["frames_left"] == 1000  # frames leased are not done
    assert put_result(http, tokens.worker, first, result_with(first["frames"], 0.5)).status_code == 200
    third = claim(http, tokens.worker, wids[0])  # 10 s at 0.5 s a frame
    assert third["frames"] == list(range(3, 23)) and third["seconds_per_frame"] == pytest.approx(0.5)
    assert third["frames_left"] == 999
    view = get_job(http, tokens.client, job["id"])
    assert view["parts"]["total"] == 4 and view["frames"] == {**view["frames"], "total": 1000, "done": 1}


def test_the_last_parts_are_shared_among_the_live_workers(http, tokens, sha):
    """At 0.01 s a frame a 180 s part would be the whole job: each claim takes at most its
    share of what is left, so both workers render and the parts shrink towards the end."""
    submit(http, tokens.client, sha, frames="1-100", chunk=None, order="sequential")
    a, b = (register_worker(http, tokens.worker, name=n) for n in "ab")
    first = claim(http, tokens.worker, a)
    assert put_result(http, tokens.worker, first, result_with(first["frames"], 0.01)).status_code == 200
    sizes = [len(claim(http, tokens.worker, w)["frames"]) for w in (a, b, a)]
    assert sizes == [50, 25, 12], sizes


def test_the_share_counts_each_workers_slots(http, tokens, sha):
    """Two workers of two slots: four parts render at once, so each claim takes a quarter of
    what is left (a worker of one slot beside them would have taken half as much again)."""
    submit(http, tokens.client, sha, frames="1-100", chunk=None, order="sequential")
    a, b = (register_worker(http, tokens.worker, name=n, slots=2) for n in "ab")
    first = claim(http, tokens.worker, a)
    assert put_result(http, tokens.worker, first, result_with(first["frames"], 0.01)).status_code == 200
    sizes = [len(claim(http, tokens.worker, w)["frames"]) for w in (a, b, a, b)]
    assert sizes == [25, 19, 14, 11], sizes


def test_without_stats_the_leases_wall_time_sizes_the_parts(http, tokens, sha):
    submit(http, tokens.client, sha, frames="1-100", chunk=None, order="sequential")
    wid = register_worker(http, tokens.worker)
    first = claim(http, tokens.worker, wid)
    assert put_result(http, tokens.worker, first).status_code == 200  # an older worker: no _meta/
    assert len(claim(http, tokens.worker, wid)["frames"]) == 99  # a quick lease: the rest in one part


def test_a_chunk_still_forces_the_size(http, tokens, sha):
    job = submit(http, tokens.client, sha, frames="1-20", chunk=5, order="sequential")
    assert job["parts"]["total"] == 4 and job["target_part_seconds"] is None
    wid = register_worker(http, tokens.worker)
    first = claim(http, tokens.worker, wid)
    assert put_result(http, tokens.worker, first, result_with(first["frames"], 100.0)).status_code == 200
    assert claim(http, tokens.worker, wid)["frames"] == [6, 7, 8, 9, 10]


def test_the_farm_may_turn_sizing_off(settings, tokens, scene_bytes):
    http = app_with(settings, target_part_seconds=0)
    job = submit(http, tokens.client, upload(http, tokens.client, scene_bytes), frames="1-100", chunk=None)
    assert job["target_part_seconds"] is None and job["parts"]["total"] > 1


@pytest.mark.parametrize("slots", [1, 64])
def test_cut_parts_keep_to_the_parts_limit(settings, tokens, scene_bytes, slots):
    """Also when a worker says it has the most slots the farm takes, which shrinks every share."""
    http = app_with(settings, max_parts=7)
    job = submit(http, tokens.client, upload(http, tokens.client, scene_bytes), frames="1-1000", chunk=None)
    assert job["parts"]["chunk"] == 143
    wid = register_worker(http, tokens.worker, slots=slots)
    while (part := claim(http, tokens.worker, wid)) is not None:
        assert put_result(http, tokens.worker, part, result_with(part["frames"], 50.0)).status_code == 200
    assert get_job(http, tokens.client, job["id"])["parts"]["total"] <= 7


def test_every_frame_once_through_retries_paging_and_assembly(settings, tokens, scene_bytes):
    http = app_with(settings, part_page_size=3)
    job = submit(http, tokens.client, upload(http, tokens.client, scene_bytes), frames="1-40", step=3,
                 chunk=None, target_part_seconds=10)
    wids = [register_worker(http, tokens.worker, name=f"w{n}") for n in range(3)]
    failed_once = False
    turn = 0
    while True:
        part = claim(http, tokens.worker, wids[turn % 3])
        turn += 1
        if part is None:
            break
        if not failed_once and part["index"] == 2:  # a cut part fails: retried with the same frames
            assert fail_part(http, tokens.worker, part, "boom").status_code == 200
            again = claim(http, tokens.worker, wids[turn % 3])
            assert (again["index"], again["frames"]) == (2, part["frames"]) and again["attempts"] == 1
            part, failed_once = again, True
        assert put_result(http, tokens.worker, part, result_with(part["frames"], 2.0)).status_code == 200
    assert failed_once
    view = get_job(http, tokens.client, job["id"])
    assert view["status"] == "assembling" and view["frames"]["done"] == view["frames"]["total"] == 14
    frames, start = [], 0
    while start is not None:  # paging walks every part; their frames are the job's, once each
        page = get_job(http, tokens.client, job["id"], parts="1", parts_from=str(start))
        frames += [p["start"] + i * p["step"] for p in page["part_list"] for i in range(p["count"])]
        start = page["parts_next"]
    assert sorted(frames) == list(range(1, 41, 3))  # preview order: not in frame order
    farm = farm_of(http)
    archive.assemble_pending(farm)
    with farm.storage.open_read(keys.archive(job["id"])) as fh, zipfile.ZipFile(io.BytesIO(fh.read())) as zf:
        assert sorted(zf.namelist()) == [f"{f:04d}.png" for f in range(1, 41, 3)]


def test_cancel_ends_a_job_whose_parts_are_being_cut(http, tokens, sha):
    job = submit(http, tokens.client, sha, frames="1-50", chunk=None)
    wid = register_worker(http, tokens.worker)
    part = claim(http, tokens.worker, wid)
    assert http.post(f"/v1/jobs/{job['id']}/cancel", headers=bearer(tokens.client)).status_code == 200
    assert claim(http, tokens.worker, wid) is None
    expect_error(put_result(http, tokens.worker, part), 409, "job_ended")
    states = {p["state"] for p in get_job(http, tokens.client, job["id"], parts="1")["part_list"]}
    assert states <= {"cancelled", "leased"}, states


# --- claims preferring a held job (interface 2) ---------------------------------------------

def claim_holding(http, token: str, wid: str, *held: str) -> dict | None:
    resp = http.post(f"/v1/workers/{wid}/claim", json={"wait": 0, "held": list(held)}, headers=bearer(token))
    assert resp.status_code in (200, 204), resp.get_json()
    return resp.get_json()["part"] if resp.status_code == 200 else None


def test_a_held_job_wins_among_jobs_of_the_best_priority(http, tokens, sha):
    older = submit(http, tokens.client, sha, frames="1-4", chunk=1)
    held = submit(http, tokens.client, sha, frames="1-4", chunk=1)
    wid = register_worker(http, tokens.worker)
    assert claim_holding(http, tokens.worker, wid, held["id"])["job"] == held["id"]
    assert claim_holding(http, tokens.worker, wid)["job"] == older["id"]  # holding nothing: the oldest
    assert claim_holding(http, tokens.worker, wid, "0" * 12)["job"] == older["id"]  # an unknown job: ignored


def test_a_held_job_never_wins_over_a_higher_priority(http, tokens, sha):
    held = submit(http, tokens.client, sha, frames="1-4", chunk=1)
    urgent = submit(http, tokens.client, sha, frames="1-4", chunk=1, priority=5)
    wid = register_worker(http, tokens.worker)
    assert claim_holding(http, tokens.worker, wid, held["id"])["job"] == urgent["id"]


def test_held_is_checked(http, tokens, sha):
    wid = register_worker(http, tokens.worker)
    for bad in (["x"], ["0" * 12] * 17, "abc", [1]):
        resp = http.post(f"/v1/workers/{wid}/claim", json={"wait": 0, "held": bad}, headers=bearer(tokens.worker))
        expect_error(resp, 400)


# --- a result and the next claim in one request (interface 4) -------------------------------

def test_a_result_brings_the_next_part_of_the_same_job(http, tokens, sha):
    other = submit(http, tokens.client, sha, frames="1-4", chunk=2)
    job = submit(http, tokens.client, sha, frames="1-4", chunk=2)
    wid = register_worker(http, tokens.worker)
    part = claim_holding(http, tokens.worker, wid, job["id"])
    resp = put_next(http, tokens.worker, part, frames_zip(part["frames"]), next="0")
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert body["ok"] and body["job_status"] == "running"
    assert body["next"]["job"] == job["id"] and body["next"]["frames"] == [3, 4]  # its job is held
    resp = put_next(http, tokens.worker, body["next"], frames_zip([3, 4]), next="0")
    assert resp.get_json()["job_status"] == "assembling" and resp.get_json()["next"]["job"] == other["id"]
    last = resp.get_json()["next"]
    resp = put_next(http, tokens.worker, last, frames_zip(last["frames"]), next="0")
    assert resp.get_json()["next"]["frames"] == [3, 4]
    final = resp.get_json()["next"]
    assert put_next(http, tokens.worker, final, frames_zip([3, 4]), next="0").get_json()["next"] is None


def test_without_next_a_result_claims_nothing(http, tokens, sha):
    submit(http, tokens.client, sha, frames="1-4", chunk=2)
    wid = register_worker(http, tokens.worker)
    part = claim(http, tokens.worker, wid)
    assert put_result(http, tokens.worker, part).get_json() == {"ok": True, "job_status": "running"}
    assert farm_of(http).redis.hget(keys.part(f"{part['job']}:1"), "state") == "queued"


def test_a_refused_result_claims_nothing(http, tokens, sha):
    submit(http, tokens.client, sha, frames="1-4", chunk=2)
    wid = register_worker(http, tokens.worker)
    part = claim(http, tokens.worker, wid)
    expect_error(put_next(http, tokens.worker, part, frames_zip([1]), next="0"), 400, "bad_result")
    expect_error(put_next(http, tokens.worker, {**part, "token": "1-x"}, frames_zip(part["frames"]), next="0"),
                 409, "stale_lease")
    assert farm_of(http).redis.hget(keys.part(f"{part['job']}:1"), "state") == "queued"


def test_a_next_claim_past_the_waiters_cap_answers_null_and_the_result_counts(settings, tokens, scene_bytes):
    http = app_with(settings, max_waiters=0)
    job = submit(http, tokens.client, upload(http, tokens.client, scene_bytes), frames="1-2", chunk=2)
    wid = register_worker(http, tokens.worker)
    part = claim(http, tokens.worker, wid)
    resp = put_next(http, tokens.worker, part, frames_zip(part["frames"]), next="5")
    assert resp.status_code == 200 and resp.get_json()["next"] is None, resp.get_json()
    assert int(resp.headers["Retry-After"]) >= 1
    assert get_job(http, tokens.client, job["id"])["status"] == "assembling"


def test_next_is_checked(http, tokens, sha):
    submit(http, tokens.client, sha, frames="1-2", chunk=2)
    wid = register_worker(http, tokens.worker)
    part = claim(http, tokens.worker, wid)
    for params in ({"next": "-1"}, {"next": "soon"}, {"next": "0", "held": "nothex"}):
        expect_error(put_next(http, tokens.worker, part, frames_zip(part["frames"]), **params), 400)
    assert farm_of(http).redis.hget(keys.part(part["id"]), "state") == "leased"
