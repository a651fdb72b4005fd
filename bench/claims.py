"""Does a big job block Redis, and does a claim slow down as the queue grows?

1. **Writing a job of 100,000 one-frame parts.** The job is written the way `jobs.create`
   writes it (`staging.write`: batches of parts, then one commit) while Redis's SLOWLOG
   records every command (threshold 0); printed: the longest single script, the number of
   scripts and the total. Side by side, in the same run on the same server, the old way:
   the single `create_job.lua` this repository used before (read from git history), which
   wrote every part in one script.
2. **Claim latency at 100 and at 100,000 queued parts** (one job), and at 100,000 parts
   spread over 1,000 jobs: each claim (lua/claim.lua through `scheduling.claim_once`) is
   handed back at once (lua/release.lua, not timed), so the queue keeps its length.
   Printed: the median round trip and the median script time from SLOWLOG, and their ratios.

    python bench/claims.py [--parts 100000] [--claims 300]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import time

from benchtools import REPO, scratch

from framefarm.common.frameset import FrameRange, split
from framefarm.gateway import keys, scheduling, staging, workers
from framefarm.gateway.config import Settings
from framefarm.gateway.farm import Farm
from framefarm.gateway.localfarm import RedisServer

OLD = "backend/framefarm/gateway/lua/{}"


def old_create_job_source() -> str | None:
    """The single-script create_job.lua (and its _lib.lua) of the commit before it was replaced."""
    try:
        gone = subprocess.run(["git", "log", "-1", "--format=%H", "--", OLD.format("create_job.lua")], cwd=REPO,
                              capture_output=True, text=True, check=True).stdout.strip()
        show = [subprocess.run(["git", "show", f"{gone}^:{OLD.format(name)}"], cwd=REPO, capture_output=True,
                               text=True, check=True).stdout for name in ("_lib.lua", "create_job.lua")]
    except (subprocess.CalledProcessError, FileNotFoundError):
        return None
    return "\n".join(show) if gone else None


def slowlog_scripts(farm: Farm) -> list[float]:
    """Milliseconds of each script since the last reset, oldest first."""
    entries = farm.redis.slowlog_get(-1)
    return [e["duration"] / 1000 for e in reversed(entries)
            if bytes(e["command"]).upper().startswith((b"EVALSHA", b"EVAL "))]  # redis-py leaves it bytes


def reset_slowlog(farm: Farm) -> None:
    farm.redis.config_set("slowlog-log-slower-than", 0)
    farm.redis.config_set("slowlog-max-len", 1_000_000)
    farm.redis.slowlog_reset()


def record(job_id: str, priority: int = 0) -> staging.JobRecord:
    return staging.JobRecord(job_id, "bench", "", 304, priority, "{}",
                             {"name": job_id, "start": 1, "step": 1, "chunk": 1, "blender_version": 304,
                              "scene_hash": "0" * 64, "main": "scene.blend"})  # what a claim answers


def write_job(farm: Farm, job_id: str, parts: int) -> None:
    staging.write(farm, record(job_id), 1, split(FrameRange(1, parts), 1))


def time_create(farm: Farm, parts: int) -> dict:
    reset_slowlog(farm)
    t0 = time.perf_counter()
    write_job(farm, "a" * 12, parts)
    wall = time.perf_counter() - t0
    scripts = slowlog_scripts(farm)
    return {"wall_s": wall, "scripts": len(scripts), "longest_ms": max(scripts), "total_ms": sum(scripts)}


def time_old_create(farm: Farm, parts: int) -> dict | None:
    source = old_create_job_source()
    if source is None:
        return None
    script = farm.redis.register_script(source)
    reset_slowlog(farm)
    t0 = time.perf_counter()
    script(args=["b" * 12, "bench", "", 60, 304, 0, 1, 1, parts, 1, parts, "{}", "name", "old"])
    wall = time.perf_counter() - t0
    scripts = slowlog_scripts(farm)
    return {"wall_s": wall, "scripts": len(scripts), "longest_ms": max(scripts), "total_ms": sum(scripts)}


def time_claims(farm: Farm, wid: str, n: int) -> dict:
    """n claims, each handed back at once; the round trip and the script time of each claim."""
    rtts = []
    reset_slowlog(farm)
    for _ in range(n):
        t0 = time.perf_counter()
        lease = scheduling.claim_once(farm, wid, "bench")
        rtts.append(time.perf_counter() - t0)
        assert lease is not None
        farm.scripts.release(args=[lease.part_id, lease.token, wid])
    claim_ms = slowlog_scripts(farm)[0::2]  # claim, release, claim, release...
    return {"rtt_ms": statistics.median(rtts) * 1000, "script_ms": statistics.median(claim_ms)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--parts", type=int, default=100_000)
    ap.add_argument("--claims", type=int, default=300)
    args = ap.parse_args()
    with scratch("ffbench-claims-") as (root, procs):
        server = RedisServer(root / "redis", root / "redis.log").start()
        procs.append(server)
        settings = Settings(redis_url=server.url, storage=f"file://{root / 'storage'}", lease_s=600)
        farm = Farm.from_settings(settings)

        old = time_old_create(farm, args.parts)
        farm.redis.flushall()
        new = time_create(farm, args.parts)
        farm.redis.flushall()

        wid = workers.register(farm, workers.Registration("bench", 304, "", "CPU", ["CPU"], 1, "bench"))
        results = {}
        for case, (label, jobs, per_job) in enumerate((
                ("100 parts", 1, 100), (f"{args.parts} parts", 1, args.parts),
                (f"{args.parts} parts in 1000 jobs", 1000, args.parts // 1000))):
            for j in range(jobs):
                write_job(farm, f"{case}{j:011x}", per_job)
            results[label] = time_claims(farm, wid, args.claims)
            farm.redis.delete(keys.queue(304))  # the next case starts from an empty line
        print(f"create a job of {args.parts} one-frame parts:")
        if old:
            print(f"  old, one script:   longest script {old['longest_ms']:8.1f} ms")
        print(f"  staged in batches: longest script {new['longest_ms']:8.1f} ms  ({new['scripts']} scripts, "
              f"{new['total_ms']:.0f} ms in all, {new['wall_s']:.2f} s wall)")
        if old:
            print(f"  longest script, old / new: {old['longest_ms'] / new['longest_ms']:.1f}x")
        print(f"claim latency (median of {args.claims}; each claim handed back at once):")
        for label, r in results.items():
            print(f"  {label:>28}: round trip {r['rtt_ms']:.3f} ms, script {r['script_ms']:.3f} ms")
        base, big, spread = results.values()
        print(f"  {args.parts} / 100 parts: round trip {big['rtt_ms'] / base['rtt_ms']:.2f}, "
              f"script {big['script_ms'] / base['script_ms']:.2f}")
        print(f"  {args.parts} in 1000 jobs / 100 parts: round trip {spread['rtt_ms'] / base['rtt_ms']:.2f}, "
              f"script {spread['script_ms'] / base['script_ms']:.2f}")
        print(json.dumps({"old_create": old, "create": new, "claims": results}))


if __name__ == "__main__":
    main()
