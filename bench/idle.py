"""What do idle workers cost a gateway, and how soon does one of them get new work?

2,000 fake idle workers (the project's own client, common/api.py FarmAPI, in a few processes
of many threads each) long-poll one gateway host started as `framefarm up` starts it (gunicorn
with the packaged config: gevent). With every claim waiting, printed: the CPU the gateway's
processes and redis-server spend per second (% of one core) over `--seconds`. Then, `--jobs`
times, a one-part job is written to the queue (as jobs.create commits one: the "work" event
wakes the waiting claims) and the time until a worker holds its part is measured; the worker
sends its result, so the next job finds the farm idle again. Printed: the median and the worst.

    python bench/idle.py [--workers 2000] [--seconds 30] [--jobs 10]
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

PROCESSES = 4
WAIT_S = 20.0  # what a worker asks for; the gateway's claim_wait_s caps it (20 s by default)
RAMP_S = 40.0


def idle_worker(url: str, token: str, folder: Path, stop: threading.Event, claimed) -> None:
    """Claim, waiting, over and over; register again when the farm forgot this worker (as the
    agent does: a registration not renewed by a claim within the worker timeout expires)."""
    api = FarmAPI(Client([url], token, discover=False))
    wid = None
    failures = 0
    while not stop.is_set():
        try:
            if wid is None:
                wid = api.register({"name": "idle", "blender_version": "3.4"})["id"]
            part = api.claim(wid, WAIT_S)
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, default=2000)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--jobs", type=int, default=10)
    args = ap.parse_args()
    # Every fake worker holds a socket or two, and the processes forked below inherit this
    # process's limit on open files (1024 on many systems): lift it to the hard limit.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    with scratch("ffbench-idle-") as (root, procs):
        redis, farm, token, gw = gateway_host(root, procs,
                                              {"FRAMEFARM_MAX_WORKERS_PER_TOKEN": str(args.workers + 100)})
        ctx = multiprocessing.get_context("fork")
        claimed = ctx.Queue()
        until = time.time() + args.seconds + args.jobs * 8 + 720
        workers = [ctx.Process(target=idle_workers, args=(gw.url, token, args.workers // PROCESSES,
                                                           str(root / f"p{i}"), claimed, until), daemon=True)
                   for i in range(PROCESSES)]
        for p in workers:
            p.start()
        n = args.workers // PROCESSES * PROCESSES
        t0 = time.time()
        while farm.redis.zcard(keys.WORKERS) < n:
            time.sleep(0.5)
            if time.time() - t0 > RAMP_S + 600:  # on a loaded machine registrations take a while
                print((root / "gateway.log").read_text(errors="replace")[-3000:])
                raise SystemExit(f"only {farm.redis.zcard(keys.WORKERS)} of {n} workers registered")
        time.sleep(WAIT_S + 2)  # every worker's first claim answered 204 once, now all waiting again
        gw_cpu, redis_cpu = cpu_seconds(gw.pid), cpu_seconds(redis.pid)
        time.sleep(args.seconds)
        gw_pct = 100 * (cpu_seconds(gw.pid) - gw_cpu) / args.seconds
        redis_pct = 100 * (cpu_seconds(redis.pid) - redis_cpu) / args.seconds
        latencies = []
        for j in range(args.jobs):
            job = f"d{j:011x}"
            start = time.time()
            write_job(farm, job, 1)
            got, when = claimed.get(timeout=60)
            assert got == job, (got, job)
            latencies.append((when - start) * 1000)
            time.sleep(5)  # the woken claims settle before the next job
        for p in workers:
            p.terminate()
        print(f"{n} idle workers long-polling one gateway host: gateway {gw_pct:.1f} % of a core, "
              f"redis {redis_pct:.1f} % (over {args.seconds:.0f} s)")
        print(f"a new job's first part claimed after {statistics.median(latencies):.0f} ms (median of {args.jobs}; "
              f"worst {max(latencies):.0f} ms)")
        print(json.dumps({"workers": n, "gateway_pct": gw_pct, "redis_pct": redis_pct, "first_claim_ms": latencies}))


if __name__ == "__main__":
    main()
