"""Preview-first order (issue 12, item 1): the frames of a job's first claims, on a real farm.

A job in preview order hands out its first, last and middle frames, then bisects; in
sequential order, frames in order. The claims here go through a real gunicorn gateway and
real Redis (the test speaks the worker API itself, so each claim's frames are exact); the last
test lets a real `framefarm worker` with Blender render a preview job and reads the order its
parts were leased in from their lease fences.
"""
from __future__ import annotations

import json

import pytest

from apitools import bearer, claim, get_job, put_result, register_worker, scene_bytes, submit, upload  # noqa: F401
from farmtools import framefarm_cli, wait_for, zip_bytes
from framefarm.gateway import framestats, keys
from livetools import LiveHttp


@pytest.fixture(scope="module")
def live(module_cluster):
    gw = module_cluster.add_gateway()
    return LiveHttp(gw.url, module_cluster.redis.url, module_cluster.root / "storage")


@pytest.fixture
def tokens(module_cluster):
    return module_cluster.tokens


@pytest.fixture
def sha(live, tokens, scene_bytes):
    return upload(live, tokens.client, scene_bytes)


def claims(live, token: str, wid: str, n: int) -> list[dict]:
    got = [claim(live, token, wid) for _ in range(n)]
    assert all(got), got
    return got  # type: ignore[return-value]


def cancel(live, token: str, job: dict) -> None:
    assert live.post(f"/v1/jobs/{job['id']}/cancel", headers=bearer(token)).status_code == 200


def timed_result(frames: list[int], seconds: float) -> bytes:
    stats = {"frames": [{"frame": f, "seconds": seconds, "peak_rss_bytes": 1000} for f in frames]}
    return zip_bytes({**{f"{f:04d}.png": b"frame" for f in frames}, framestats.STATS_NAME: json.dumps(stats).encode()})


def test_parts_sized_by_time_show_first_last_middle_then_bisect_then_contiguous_runs(live, tokens, sha):
    job = submit(live, tokens.client, sha, frames="1-40", chunk=None, target_part_seconds=10)
    assert job["order"] == "preview"
    wid = register_worker(live, tokens.worker, name="order-timed")
    first = claims(live, tokens.worker, wid, 9)
    # 5 single frames (first, last, middle, quarters), then the 4 runs between them in bisecting
    # order, each cut to one frame while nothing is measured (first_part_frames).
    assert [p["frames"] for p in first] == [[1], [40], [20], [10], [30], [2], [31], [11], [21]]
    for p in first:
        assert put_result(live, tokens.worker, p, timed_result(p["frames"], 0.5)).status_code == 200
    # Measured now (0.5 s a frame, 10 s parts): the rest of the first run, contiguous, in one part.
    assert claim(live, tokens.worker, wid)["frames"] == list(range(3, 10))
    cancel(live, tokens.client, job)


def test_sequential_keeps_the_frames_in_order(live, tokens, sha):
    job = submit(live, tokens.client, sha, frames="1-40", chunk=None, order="sequential")
    assert job["order"] == "sequential" and job["parts"]["total"] == 1
    wid = register_worker(live, tokens.worker, name="order-seq")
    assert [p["frames"] for p in claims(live, tokens.worker, wid, 4)] == [[1], [2], [3], [4]]
    cancel(live, tokens.client, job)


@pytest.mark.parametrize("order, starts", [
    ("preview", [1, 37, 17, 9, 25, 5, 13, 21, 29, 33]),  # chunks 0, 9, 4, 2, 6, 1, 3, 5, 7, 8
    ("sequential", [1, 5, 9, 13, 17, 21, 25, 29, 33, 37]),
])
def test_a_chunked_job_hands_out_whole_chunks_in_its_order(live, tokens, sha, order, starts):
    job = submit(live, tokens.client, sha, frames="1-40", chunk=4, order=order)
    wid = register_worker(live, tokens.worker, name=f"order-chunk-{order}")
    got = claims(live, tokens.worker, wid, 10)
    assert [p["frames"][0] for p in got] == starts
    assert all(len(p["frames"]) == 4 and p["frames"] == list(range(p["frames"][0], p["frames"][0] + 4)) for p in got)
    assert claim(live, tokens.worker, wid) is None
    cancel(live, tokens.client, job)


def test_a_real_worker_renders_the_first_last_and_middle_frames_first(module_cluster, live, tokens, scenes,
                                                                     tmp_path):
    """With one worker (one slot) the lease fences say the order the parts went out in."""
    module_cluster.add_worker()
    module_cluster.wait_registered(1)
    scene = scenes("--animated", "--size", "32", "--samples", "1")
    # From a folder of its own: `--wait` downloads the frames into the current folder.
    res = framefarm_cli("submit", str(scene), "--frames", "1-9", "--wait", "--json", env=module_cluster.client_env(),
                        cwd=tmp_path)
    assert res.returncode == 0, res.stderr + module_cluster.logs()
    job = json.loads(res.stdout)
    assert job["status"] == "done" and job["order"] == "preview"
    r = live.redis
    wait_for(lambda: r.hget(keys.job(job["id"]), "status") == "done", 10, "the job's record")
    total = int(r.hget(keys.job(job["id"]), "parts_total"))
    parts = [r.hgetall(keys.part(keys.part_id(job["id"], i))) for i in range(total)]
    leased = sorted(parts, key=lambda p: int(p["token"].split("-")[0]))
    assert [int(p["start"]) for p in leased[:3]] == [1, 9, 5]
    assert sorted(f for p in parts for f in range(int(p["start"]), int(p["start"]) + int(p["count"]))) == \
        list(range(1, 10))
