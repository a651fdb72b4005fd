"""A worker claims its next part while the current one renders and fetches that part's scene
meanwhile (worker/agent.py LOOKAHEAD_S), against a real gunicorn gateway and a real worker:
the next job's scene is fetched before the current part's result is sent, every frame still
comes back once, and a worker that stops hands the part it claimed ahead back at once.
"""
from __future__ import annotations

import json
import re
import signal

from farmtools import check_frames, framefarm_cli, wait_for
from framefarm.gateway import keys


def submit(cluster, scene, frames: str) -> str:
    res = framefarm_cli("submit", str(scene), "--frames", frames, "--chunk", "1", "--json", env=cluster.client_env())
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)["id"]


def requests(gateway) -> list[tuple[str, str, str]]:
    return re.findall(r'"([A-Z]+) (/\S*)" (\d{3})', gateway.log_path.read_text(errors="replace"))


def test_the_next_jobs_scene_is_fetched_while_the_current_part_renders(cluster, scenes, tmp_path):
    scene_a, scene_b = scenes("--animated", "--size", "48"), scenes("--size", "40")
    gateway = cluster.add_gateway(processes=1)
    # Two parts of the first job: its second part's claim brings the time per frame the first one
    # measured, the look-ahead's cue (none is made before the farm knows it).
    first, second = submit(cluster, scene_a, "1-2"), submit(cluster, scene_b, "1-1")
    cluster.add_worker()
    r = cluster.redis.client()
    wait_for(lambda: all(r.hget(keys.job(j), "status") == b"done" for j in (first, second)), 180,
             "both jobs to finish" + cluster.logs())
    log = requests(gateway)
    fetched = log.index(("GET", f"/v1/parts/{second}:0/scene", "200"))  # the first time: ahead
    sent = log.index(("PUT", f"/v1/parts/{first}:1/result", "200"))
    assert fetched < sent, ("the second job's scene was not fetched before the first part's result went", log)
    for job, frames, size in ((first, [1, 2], 48), (second, [1], 40)):
        out = tmp_path / job
        res = framefarm_cli("download", job, "--output", str(out), env=cluster.client_env())
        assert res.returncode == 0, res.stderr
        check_frames(out, frames, (size, size))


def test_a_stopping_worker_hands_back_the_part_it_claimed_ahead(cluster, scenes):
    scene = scenes("--animated", "--size", "48", "--samples", "256")  # a part that renders for a while
    cluster.add_gateway(processes=1)
    job = submit(cluster, scene, "1-3")
    worker = cluster.add_worker()
    r = cluster.redis.client()

    def leased() -> list[str]:
        return [f"{job}:{i}" for i in range(3) if r.hget(keys.part(f"{job}:{i}"), "state") == b"leased"]

    # The first part renders alone (the farm does not know the time per frame yet); the second,
    # rendering, has the third claimed ahead.
    wait_for(lambda: len(leased()) == 2, 120, "a part rendering and the next claimed ahead" + cluster.logs())
    worker.signal(signal.SIGTERM)
    wait_for(lambda: not worker.alive(), 30, "the worker to stop")
    assert leased() == [], "a part stayed leased to a stopped worker (its lease would have to run out)"
    states = {r.hget(keys.part(f"{job}:{i}"), "state") for i in range(3)}
    assert states <= {b"queued", b"done"}, states
