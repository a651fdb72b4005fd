"""What do idle workers cost a gateway, and how soon does one of them get new work?

2,000 fake idle workers (the project's own client, common/api.py FarmAPI, in a few processes
of many threads each) long-poll one gateway host started as `framefarm up` starts it (gunicorn
with the packaged config: gevent). Each claim waits as long as the farm lets it (the
registration's `claim_wait_s`), as the agent's do. With every claim waiting, printed: the CPU
the gateway's processes and redis-server spend per second (% of one core) over one whole claim
wait (each worker renews its claim once in it). Then, `--jobs` times, a one-part job is written
to the queue (as jobs.create commits one: the "work" event wakes the waiting claims) and the
time until a worker holds its part is measured; the worker sends its result, so the next job
finds the farm idle again. Printed: the median and the worst. `--claim-wait 20,120` measures
each farm setting in turn, in one run.

    python bench/idle.py [--workers 2000] [--claim-wait 20,120] [--jobs 10]
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import statistics
import threading
import time
from pathlib import Path

from benchtools import scratch
from claims import write_job
from scheduling import cpu_seconds, gateway_host, result_zip

from framefarm.common.api import FarmAPI
from framefarm.common.http import Client, FarmError, backoff
from framefarm.gateway import keys
from framefarm.gateway.config import Settings
from framefarm.gateway.workers import live as workers_live

PROCESSES = 4
RAMP_S = 40.0


def idle_worker(url: str, token: str, folder: Path, stop: threading.Event, claimed) -> None:
    """Claim, waiting, over and over; register again when the farm forgot this worker (as the
    agent does: a registration nothing renewed within the worker timeout expires)."""
    api = FarmAPI(Client([url], token, discover=False))
    wid, wait_s = None, 0.0
    failures = 0
    while not stop.is_set():
        try:
            if wid is None:
                reply = api.register({"name": "idle", "blender_version": "3.4"})
                wid, wait_s = reply["id"], reply["claim_wait_s"]
            part = api.claim(wid, wait_s)
            failures = 0
        except FarmError as e:
            if e.code == "unknown_worker":
                wid = None
            else:  # a gateway too busy to answer in time: try again later, as the agent does
                failures += 1
                stop.wait(backoff(failures, 2.0))
            continue
        if part is not None:
            claimed.put((part["job"], time.time()))
            api.upload_result(part["id"], part["token"], result_zip(folder, part["frames"]))


def idle_workers(url: str, token: str, n: int, folder: str, claimed, until: float) -> None:
    stop = threading.Event()
    for i in range(n):
        Path(folder, str(i)).mkdir(parents=True, exist_ok=True)
        threading.Thread(target=idle_worker, args=(url, token, Path(folder, str(i)), stop, claimed),
                         daemon=True).start()
        time.sleep(RAMP_S / n)  # a farm's workers start over a while, not in one instant
    time.sleep(max(0.0, until - time.time()))
    stop.set()


def measure(workers: int, wait_s: float, jobs: int) -> dict:
    """Idle workers on a farm whose claims wait `wait_s`: the gateway's and Redis's CPU over one
    whole wait, and how soon `jobs` new jobs were claimed, one at a time."""
    with scratch("ffbench-idle-") as (root, procs):
        redis, farm, token, gw = gateway_host(root, procs, {"FRAMEFARM_MAX_WORKERS_PER_TOKEN": str(workers + 100),
                                                            "FRAMEFARM_CLAIM_WAIT_S": str(wait_s)})
        ctx = multiprocessing.get_context("fork")
        claimed = ctx.Queue()
        until = time.time() + 2 * wait_s + jobs * 8 + 720
        procs_ = [ctx.Process(target=idle_workers, args=(gw.url, token, workers // PROCESSES,
                                                         str(root / f"p{i}"), claimed, until), daemon=True)
                  for i in range(PROCESSES)]
        for p in procs_:
            p.start()
        n = workers // PROCESSES * PROCESSES
        t0 = time.time()
        while farm.redis.zcard(keys.WORKERS) < n:
            time.sleep(0.5)
            if time.time() - t0 > RAMP_S + 600:  # on a loaded machine registrations take a while
                print((root / "gateway.log").read_text(errors="replace")[-3000:])
                raise SystemExit(f"only {farm.redis.zcard(keys.WORKERS)} of {n} workers registered")
        time.sleep(5)  # the last registrations' first claims are sent
        gw_cpu, redis_cpu = cpu_seconds(gw.pid), cpu_seconds(redis.pid)
        # One whole claim wait: every worker renews its claim once in it, whenever it started.
        time.sleep(wait_s)
        gw_pct = 100 * (cpu_seconds(gw.pid) - gw_cpu) / wait_s
        redis_pct = 100 * (cpu_seconds(redis.pid) - redis_cpu) / wait_s
        live = len(workers_live(farm))
        latencies = []
        for j in range(jobs):
            job = f"d{j:011x}"
            start = time.time()
            write_job(farm, job, 1)
            got, when = claimed.get(timeout=60)
            assert got == job, (got, job)
            latencies.append((when - start) * 1000)
            time.sleep(5)  # the woken claims settle before the next job
        for p in procs_:
            p.terminate()
    return {"workers": n, "claim_wait_s": wait_s, "live": live, "gateway_pct": gw_pct, "redis_pct": redis_pct,
            "first_claim_ms": latencies}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, default=2000)
    ap.add_argument("--claim-wait", default=str(Settings().claim_wait_s),
                    help="the farm's claim_wait_s, or several (comma-separated) measured in turn")
    ap.add_argument("--jobs", type=int, default=10)
    args = ap.parse_args()
    # Every fake worker holds a socket or two, and the processes forked below inherit this
    # process's limit on open files (1024 on many systems): lift it to the hard limit.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    results = []
    for wait_s in (float(w) for w in args.claim_wait.split(",")):
        r = measure(args.workers, wait_s, args.jobs)
        results.append(r)
        print(f"{r['workers']} idle workers long-polling one gateway host, claims waiting {wait_s:.0f} s: "
              f"gateway {r['gateway_pct']:.1f} % of a core, redis {r['redis_pct']:.1f} % (over one wait); "
              f"{r['live']} of them live; a new job's first part claimed after "
              f"{statistics.median(r['first_claim_ms']):.0f} ms (median of {args.jobs}; "
              f"worst {max(r['first_claim_ms']):.0f} ms)", flush=True)
    if len(results) > 1:
        base = results[0]
        for r in results[1:]:
            print(f"gateway CPU, {r['claim_wait_s']:.0f} s / {base['claim_wait_s']:.0f} s waits: "
                  f"{r['gateway_pct'] / base['gateway_pct']:.2f}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
