"""Issue 9, item 8: a part cannot hold a worker forever, nor take all its memory.

A job's `max_frame_seconds` (`framefarm submit --max-frame-time`) and a worker's
`--max-blender-memory` each stop Blender and fail the part with a reason the user reads,
on a live farm with Debian's Blender. Each limit is also shown not to trip on a scene
that keeps within it.
"""
from __future__ import annotations

import json

from apitools import bearer, expect_error, farm_of, job_body, scene_bytes, scene_sha, snapshot
from farmtools import descendants, framefarm_cli, wait_for
from framefarm.common.api import FarmAPI
from sandboxtools import GREEN, attack_scene, farm_api, rendered, submit

__all__ = ["scene_bytes", "scene_sha"]  # fixtures, imported for pytest


def part_error(api: FarmAPI, job_id: str, text: str, timeout: float = 90) -> str:
    """The first part error of the job that contains `text` (waited for)."""
    def found() -> str | None:
        job = api.job(job_id, parts=True)
        return next((p["error"] for p in job.get("part_list", []) if p["error"] and text in p["error"]), None)
    return wait_for(found, timeout, f"a part of job {job_id} to fail with {text!r}", interval=0.3)


def no_blender_left(worker) -> bool:
    return not [pid for pid in descendants(worker.pid) if "blender" in _comm(pid)]


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read()
    except OSError:
        return ""


def test_a_frame_slower_than_the_jobs_limit_fails_its_part(cluster, tmp_path):
    cluster.add_gateway()
    worker = cluster.add_worker()
    cluster.wait_registered(1)
    api = farm_api(cluster, cluster.tokens.client)
    quick = attack_scene(tmp_path / "quick" / "scene.blend")
    slow = attack_scene(tmp_path / "slow" / "scene.blend", "--samples", "1000000", "--size", "64")

    # Within the limit: renders, and the job shows its limit.
    done = framefarm_cli("submit", str(quick), "--frames", "1", "--max-frame-time", "300", "--json",
                         env=cluster.client_env())
    assert done.returncode == 0, done.stderr
    job = json.loads(done.stdout)
    assert job["max_frame_seconds"] == 300
    assert rendered(api, job["id"], tmp_path / "out") == GREEN

    done = framefarm_cli("submit", str(slow), "--frames", "1", "--max-frame-time", "3", "--json",
                         env=cluster.client_env())
    assert done.returncode == 0, done.stderr
    job_id = json.loads(done.stdout)["id"]
    assert part_error(api, job_id, "took longer") == "frame 1 took longer than 3 s (the job's max_frame_seconds)"
    wait_for(lambda: no_blender_left(worker), 30, "the worker to stop Blender")
    api.cancel(job_id)


def test_max_frame_time_must_be_a_positive_whole_number(http, tokens, scene_sha):
    farm = farm_of(http)
    before = snapshot(farm)
    for bad in (0, -5, 1.5, "10", 604801):
        resp = http.post("/v1/jobs", json=job_body(scene_sha, max_frame_seconds=bad), headers=bearer(tokens.client))
        error = expect_error(resp, 400, "bad_max_frame_seconds")
        assert "max_frame_seconds must be a whole number of seconds" in error["message"]
    assert snapshot(farm) == before
    done = framefarm_cli("submit", "nothing.blend", "--frames", "1", "--max-frame-time", "0")
    assert done.returncode != 0 and "--max-frame-time must be 1 second or more" in done.stderr


def test_blender_using_more_memory_than_the_worker_allows_fails_its_part(cluster, tmp_path):
    cluster.add_gateway()
    worker = cluster.add_worker(extra=["--max-blender-memory", "450MiB"])
    cluster.wait_registered(1)
    api = farm_api(cluster, cluster.tokens.client)
    light = attack_scene(tmp_path / "light" / "scene.blend")  # about 250 MB resident in Blender 3.4
    heavy = attack_scene(tmp_path / "heavy" / "scene.blend", "--subdivide", "10")  # about 680 MB

    assert rendered(api, submit(api, {"scene.blend": light}, "scene.blend"), tmp_path / "out") == GREEN
    job_id = submit(api, {"scene.blend": heavy}, "scene.blend")
    message = part_error(api, job_id, "memory")
    assert message.startswith("Blender used more than 450 MiB of memory ("), message
    assert "--max-blender-memory" in message
    wait_for(lambda: no_blender_left(worker), 30, "the worker to stop Blender")
    api.cancel(job_id)
