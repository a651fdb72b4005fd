"""`framefarm estimate` on a real farm (issue 12, item 2): gunicorn gateway, two `framefarm
worker` processes with Debian's Blender, Redis, and the command line.

The scene's frames take a fraction of a second to a second each. The estimate's numbers are
checked against what the real job then measures, and the resumed job against the frames the
workers rendered: each frame once, the samples never again.
"""
from __future__ import annotations

import json
import math

import redis

from farmtools import framefarm_cli
from framefarm.gateway import keys


def test_an_estimate_predicts_the_real_job_and_resume_renders_only_the_rest(cluster, scenes):
    scene = scenes("--animated", "--size", "64", "--samples", "48")
    cluster.env["FRAMEFARM_PRICE_PER_WORKER_HOUR"] = "2.5"
    cluster.add_gateway()
    cluster.add_worker()
    cluster.add_worker()
    cluster.wait_registered(2)
    env = cluster.client_env()

    res = framefarm_cli("estimate", str(scene), "--frames", "1-12", "--json", env=env)
    assert res.returncode == 0, res.stderr + cluster.logs()
    job = json.loads(res.stdout)
    est = job["estimate"]
    assert job["status"] == "estimated" and job["frames"]["done"] == 3
    assert est["samples"] == [1, 6, 12] and est["frames_left"] == 9 and est["workers"] == 2
    spf = est["seconds_per_frame"]
    assert 0 < spf["min"] <= spf["mean"] <= spf["max"]
    # How it projects (estimates.py): 9 frames over 2 workers in whole frames (parts sized by
    # time shrink to single frames at the end), plus a scene load each.
    load = est["projected_seconds"] - math.ceil(9 / 2) * spf["mean"]
    assert -0.2 <= load < 30, est
    assert est["currency"] == "USD" and est["price_per_worker_hour"] == 2.5
    # The cost: the rest's worker time (its frames, and a load per worker) at the farm's price.
    assert est["cost"] > 0 and abs(est["cost"] - (9 * spf["mean"] + 2 * load) / 3600 * 2.5) < 1e-3

    shown = framefarm_cli("status", job["id"], env=env)
    assert shown.returncode == 0, shown.stderr
    assert "seconds per frame" in shown.stdout and f"framefarm resume {job['id']}" in shown.stdout
    assert "USD" in shown.stdout

    r = redis.Redis.from_url(cluster.redis.url, decode_responses=True)
    before = r.hgetall(keys.job(job["id"]))
    res = framefarm_cli("resume", job["id"], "--json", env=env)
    assert res.returncode == 0, res.stderr
    res = framefarm_cli("status", job["id"], "--wait", "--json", env=env)
    assert res.returncode == 0, res.stderr + cluster.logs()
    done = json.loads(res.stdout)
    assert done["status"] == "done" and done["frames"]["done"] == 12

    after = r.hgetall(keys.job(job["id"]))
    # Every frame rendered once by the workers: their measured frames add up to the job's, and
    # the parts cover 1-12 exactly, the three samples among them as the parts done before.
    assert int(after["stat_frames"]) == 12
    total = int(after["parts_total"])
    parts = [r.hgetall(keys.part(keys.part_id(job["id"], i))) for i in range(total)]
    frames = sorted(f for p in parts for f in range(int(p["start"]), int(p["start"]) + int(p["count"])))
    assert frames == list(range(1, 13))
    samples = [p for p in parts if int(p["done_at"]) <= int(before["estimated_at"])]
    assert sorted(int(p["start"]) for p in samples) == [1, 6, 12] and all(p["count"] == "1" for p in samples)
    # The estimate against the real job, as the workers measured it: the rest's frames fall in the
    # samples' range (a sample that was its Blender's first render carries that Blender's warm-up,
    # so the max and the mean lean high: docs/estimates.md), and the whole job's mean is the mean's.
    rest = (float(after["stat_seconds"]) - float(before["stat_seconds"])) / 9
    whole = float(after["stat_seconds"]) / 12
    print(f"estimate {spf}, projected {est['projected_seconds']} s; measured: the rest {rest:.3f} s a frame, "
          f"the job {whole:.3f}")
    assert spf["min"] / 2 <= rest <= spf["max"] * 1.5, (spf, rest)
    assert spf["mean"] / 3 <= whole <= spf["mean"] * 3, (spf, whole)
