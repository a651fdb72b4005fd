"""Estimates: render a few sample frames of a job, say what the rest would take, go on if asked.

A job submitted with `"estimate": true` (CLI `framefarm estimate`) is split like any job
(ordering.py), with its sample frames (the first, the last and the middle one; fewer when the
job has fewer frames) as its first parts, single frames rendered at full settings like any
part. Only those are queued; the job's other parts are staged into its *held* parts
(keys.job_held). Once every sample is counted (lua/complete.lua) the job waits in status
`estimated`: it hands out nothing, still holds its files and its samples' results (it counts
against its owner's active jobs), and its view carries `estimate`. `POST /v1/jobs/{id}/resume`
goes on (lua/resume.lua): the held parts become the job's queue in one step, so the samples are
never rendered again: they are done parts of the same job, assembled with the rest. Cancel ends
it as any job. An estimate nobody resumes expires `archive_retention_s` after its samples were
in, like a finished job's archive (`expire_idle`, run by clean-up).

How the rest is projected (`view`): the samples' mean time per frame (the workers' own
measurement, `_meta/stats.json`; the leases' wall time for workers that send none) times the
frames left, spread over the live workers that can take the job now, in whole parts: with a
chunk, rounds of `chunk` frames per worker; with parts sized by time, whole frames (the last
parts shrink to share the end), plus one scene load per worker (the samples' mean load time:
warm Blender loads a scene once per slot). That is a floor: it assumes the workers stay, are
alike and take nothing else. The cost is the worker time the rest takes (frames left times the
mean, plus the loads) at the farm's `price_per_worker_hour`, when it has one.
"""
from __future__ import annotations

import math
from typing import Any, cast

from . import keys, workers
from .farm import Farm
from .gateways import redis_now_ms
from .ordering import Plan

MAX_EXPIRED = 100  # estimates one clean-up sweep expires


def fields(plan: Plan) -> dict[str, Any]:
    """The job fields of an estimate whose parts are `plan`'s."""
    samples = sorted(span.start for span in plan.spans[:plan.samples])
    return {"estimate_parts": plan.samples, "estimate_pending": 1,
            "estimate_samples": ",".join(str(f) for f in samples)}


def view(farm: Farm, job: dict[str, str]) -> dict[str, Any] | None:
    """The job view's `estimate`: None for a job that is no estimate, or whose samples are not all in."""
    if "estimated_at" not in job:
        return None
    frames = int(float(job.get("est_frames", 0)))
    if frames:
        mean = float(job["est_seconds"]) / frames
        low, high = float(job.get("est_min", mean)), float(job.get("est_max", mean))
    else:  # workers that send no stats: the leases' wall time, one number
        wall = int(job.get("est_wall_frames", 0))
        mean = int(job.get("est_wall_ms", 0)) / 1000 / wall if wall else 0.0
        low = high = mean
    parts = int(job.get("est_parts", 0))
    load = float(job.get("est_load_seconds", 0)) / parts if parts else 0.0
    samples = [int(f) for f in job["estimate_samples"].split(",")]
    left = int(job["frames_total"]) - len(samples)
    able = len(workers.capable(farm, int(job["blender_version"]), job["id"]))
    chunk = 1 if "target_ms" in job else int(job["chunk"])  # timed parts shrink to single frames at the end
    projected = None
    if able and left:
        rounds = math.ceil(math.ceil(left / chunk) / able)
        projected = round(min(rounds * chunk, left) * mean + load, 1)
    elif able or not left:
        projected = 0.0
    price = farm.settings.price_per_worker_hour
    priced = math.isfinite(price) and price > 0
    cost = None
    if priced:
        cost = round((left * mean + min(max(able, 1), left) * load) / 3600 * price, 4)
    return {"samples": samples, "seconds_per_frame": {"min": round(low, 3), "mean": round(mean, 3),
                                                      "max": round(high, 3)},
            "peak_rss_bytes": int(float(job.get("est_peak_rss", 0))) or None, "workers": able,
            "frames_left": left, "projected_seconds": projected,
            "price_per_worker_hour": price if priced else None,
            "currency": farm.settings.currency if priced else None, "cost": cost}


def expire_idle(farm: Farm) -> list[str]:
    """Estimates left waiting past the farm's archive retention end as `expired` (clean-up's
    release then lets go of their files and results). Returns the jobs that expired."""
    cutoff = redis_now_ms(farm.redis) - farm.ms(farm.settings.archive_retention_s)
    expired = []
    for job_id in cast(list[str], farm.redis.zrangebyscore(keys.ESTIMATED, "-inf", cutoff, start=0, num=MAX_EXPIRED)):
        why = ("the estimate was not resumed within the farm's retention "
               f"({farm.settings.archive_retention_s} s, FRAMEFARM_ARCHIVE_RETENTION_S); submit it again")
        if farm.scripts.expire_estimate(args=[job_id, why]):
            expired.append(job_id)
    return expired
