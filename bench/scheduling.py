"""How many parts can one gateway host hand out, and does a claim slow down as the queue grows?

1. **Claim+complete cycles per second** through one gateway host started as `framefarm up`
   starts it (localfarm.GatewayProcess: gunicorn with the packaged config), with 4, 16 and 64
   fake workers using the project's own client (common/api.py FarmAPI): each claims a part of
   one frame and sends its result (a real zip, checked by the gateway), over and over; where
   the client can, the result brings the next claim (`?next`). The fake workers run in their
   own processes, on the same cores as the gateway. Printed per count: cycles/s, the CPU the
   gateway's processes, redis-server and the fake workers spent per cycle, and the rate at which
   those costs would keep every core of the machine busy (a ceiling for any gateway process
   count on this machine, the fake workers sharing its cores). With `--compare`, each count runs
   also "as before" on a second gateway host, alternating: the fake workers ask for an upload
   URL before each result (FRAMEFARM_INLINE_RESULT_BYTES=0), which was a cycle's second request;
   and with `--token-cache S`, a third host whose gateway keeps tokens S seconds
   (FRAMEFARM_TOKEN_CACHE_S, off by default). The ratios to "before" are printed. With
   `--floor`, each count runs also against gunicorn with the gateway host's settings serving
   bench/bare_wsgi.py, which reads each result and answers without a look at it: what the
   fake workers, gunicorn and gevent cost a cycle before any of the gateway's own code runs.
2. **Claim latency at 100 and at 100,000 queued parts** through the gateway (FarmAPI.claim,
   each part handed back at once so the queue keeps its length): the median round trip and
   the ratio. `bench/claims.py` measures the same inside Redis, without HTTP.

    python bench/scheduling.py [--seconds 10] [--workers 4,16,64] [--parts 100000] [--compare] [--floor]
"""
from __future__ import annotations

import argparse
import ast
import inspect
import json
import multiprocessing
import os
import statistics
import sys
import threading
import time
import urllib.request
import zipfile
from pathlib import Path

from benchtools import scratch
from claims import write_job

from framefarm.common.api import FarmAPI
from framefarm.common.http import Client
from framefarm import gateway
from framefarm.gateway import keys
from framefarm.gateway.auth import create_token
from framefarm.gateway.config import Settings
from framefarm.gateway.farm import Farm
from framefarm.gateway.localfarm import GatewayProcess, Process, RedisServer, free_port

PROCESSES = 4  # fake workers' processes: one Python process's GIL could not keep 64 of them busy
_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """CPU time of `pid` and its live children (a gunicorn master and its workers)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if int(entry.name) == pid or int(fields[1]) == pid:  # fields[1]: the parent's pid
            total += (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime
    return total


def result_zip(folder: Path, frames: list[int]) -> Path:
    path = folder / f"{frames[0]}.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for f in frames:
            zf.writestr(f"{f:04d}.png", b"frame %d" % f)
    return path


def fake_worker(url: str, token: str, until: float, folder: Path, counts: list[int], inline: bool = True) -> None:
    """Claim, send the result, again, until `until`; the result brings the next claim where the
    client supports it. `inline` False: each result asks for an upload URL first (as before)."""
    api = FarmAPI(Client([url], token, discover=False))
    if not inline:
        api.inline_result_bytes = 0
    wid = api.register({"name": "bench", "blender_version": "3.4"})["id"]
    with_next = "next_wait" in inspect.signature(api.upload_result).parameters
    part = None
    done = 0
    while time.monotonic() < until:
        if part is None:
            part = api.claim(wid, 1.0)
            if part is None:
                continue
        path = result_zip(folder, part["frames"])
        if not inline:
            api._direct_results = None  # as before: the client asked for an upload URL before each result
        if with_next:
            reply = api.upload_result(part["id"], part["token"], path, next_wait=0)
            part = reply.get("next")
        else:
            api.upload_result(part["id"], part["token"], path)
            part = None
        path.unlink()
        done += 1
    counts.append(done)


def bare_worker(url: str, token: str, until: float, folder: Path, counts: list[int], inline: bool = True) -> None:
    """What fake_worker sends, a result with `?next=0` through the same client, to bench/bare_wsgi.py."""
    client = Client([url], token, discover=False)
    done = 0
    while time.monotonic() < until:
        path = result_zip(folder, [done % 9000 + 1])
        client.request("PUT", "/v1/parts/0123456789ab:0/result", body=path.read_bytes(), params={"next": 0},
                       headers={"X-Lease-Token": "0" * 32, "X-Worker-Id": "w-0123456789ab",
                                "Content-Type": "application/zip"}).json()
        path.unlink()
        done += 1
    counts.append(done)


def fake_workers(url: str, token: str, n: int, start: float, seconds: float, folder: str, out,
                 inline: bool = True, target=fake_worker) -> None:
    counts: list[int] = []
    folders = [Path(folder) / f"{os.getpid()}-{i}" for i in range(n)]  # each thread's result files its own
    for f in folders:
        f.mkdir(parents=True, exist_ok=True)
    threads = [threading.Thread(target=target, args=(url, token, start + seconds, f, counts, inline))
               for f in folders]
    while time.monotonic() < start - 1:  # every process starts its workers together
        time.sleep(0.05)
    cpu = time.process_time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put((sum(counts), time.process_time() - cpu))  # registrations included: a few ms


def cycles(root: Path, gw: GatewayProcess | Process, redis: RedisServer | None, farm: Farm | None, token: str,
           workers: int, seconds: float, inline: bool = True) -> dict:
    """`workers` fake workers cycling through `gw` for `seconds`; without a farm, bare_worker's
    results to bench/bare_wsgi.py (the floor)."""
    if farm is not None:
        write_job(farm, f"c{workers:011x}", int(workers * seconds * 400) + 1000)  # far more parts than any run takes
    url = gw.url if isinstance(gw, GatewayProcess) else FLOOR_URL[gw]
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    start = time.monotonic() + 3  # registrations and connections first; the clock starts after
    per = [workers // PROCESSES + (i < workers % PROCESSES) for i in range(PROCESSES)]
    procs = [ctx.Process(target=fake_workers, args=(url, token, n, start, seconds, str(root), out, inline,
                                                    fake_worker if farm is not None else bare_worker))
             for n in per if n]
    for p in procs:
        p.start()
    while time.monotonic() < start:
        time.sleep(0.01)
    redis_pid = redis.pid if redis is not None else None
    gw_cpu, redis_cpu = cpu_seconds(gw.pid), cpu_seconds(redis_pid) if redis_pid else 0.0
    time.sleep(seconds)
    gw_cpu, redis_cpu = cpu_seconds(gw.pid) - gw_cpu, (cpu_seconds(redis_pid) - redis_cpu if redis_pid else 0.0)
    got = [out.get() for _ in procs]
    done, client_cpu = sum(n for n, _ in got), sum(c for _, c in got)
    for p in procs:
        p.join()
    if farm is not None:
        farm.redis.delete(keys.queue(304))  # the next run starts from an empty line
    per = 1000 / max(done, 1)
    return {"workers": workers, "cycles_per_s": done / seconds, "gateway_ms_per_cycle": gw_cpu * per,
            "redis_ms_per_cycle": redis_cpu * per, "gateway_cores": gw_cpu / seconds,
            "client_ms_per_cycle": client_cpu * per,
            # What the cores could do if every one of them were busy with cycles at these costs.
            "ceiling_per_s": 1000 * (os.cpu_count() or 1) / ((gw_cpu + redis_cpu + client_cpu) * per or 1)}


def claim_latency(api: FarmAPI, farm: Farm, parts: int, claims: int) -> float:
    """The median claim round trip (ms) with `parts` queued; each part is handed back at once."""
    write_job(farm, f"e{parts:011x}", parts)  # job ids are hex (openapi.yaml)
    wid = api.register({"name": "latency", "blender_version": "3.4"})["id"]
    times = []
    for _ in range(claims):
        t0 = time.perf_counter()
        part = api.claim(wid, 0)
        times.append(time.perf_counter() - t0)
        assert part is not None
        api.release(part["id"], part["token"])
    farm.redis.delete(keys.queue(304))
    return statistics.median(times) * 1000


def gateway_host(root: Path, procs: list, env: dict[str, str] | None = None
                 ) -> tuple[RedisServer, Farm, str, GatewayProcess]:
    """A private redis-server and one gateway host as `framefarm up` starts it (its processes in
    `procs`), the farm's Redis as a gateway sees it, and a worker token."""
    root.mkdir(parents=True, exist_ok=True)
    redis = RedisServer(root / "redis", root / "redis.log").start()
    procs.append(redis)
    storage = f"file://{root / 'storage'}"
    farm = Farm.from_settings(Settings(redis_url=redis.url, storage=storage))
    token = create_token(farm.redis, "worker")
    gw = GatewayProcess(free_port(), redis.url, storage, root / "gateway.log", env=env)
    procs.append(gw.start())
    return redis, farm, token, gw


FLOOR_URL: dict[Process, str] = {}


def _access_log_format() -> str:
    """The gateway's access log format, read from gunicorn_conf.py without importing it (an
    import prepares a metrics folder and changes this process's limits)."""
    source = (Path(gateway.__file__).parent / "gunicorn_conf.py").read_text()
    return next(ast.literal_eval(node.value) for node in ast.parse(source).body
                if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "access_log_format")


def floor_host(root: Path, procs: list) -> Process:
    """gunicorn as the gateway host runs it (gevent, two processes, the access log written)
    serving bench/bare_wsgi.py: what a cycle costs before the gateway's own code runs."""
    port = free_port()
    host = Process("floor", [sys.executable, "-m", "gunicorn", "-k", "gevent", "--workers", "2",
                             "--worker-connections", "4000", "--keep-alive", "5", "--bind", f"127.0.0.1:{port}",
                             "--access-logfile", "-", "--access-logformat", _access_log_format(),
                             "--chdir", str(Path(__file__).parent), "bare_wsgi:app"], root / "floor.log")
    procs.append(host.start())
    FLOOR_URL[host] = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            with urllib.request.urlopen(urllib.request.Request(FLOOR_URL[host], data=b"", method="PUT"),
                                        timeout=2) as resp:
                return resp.status == 200
        except OSError:
            return False
    host.wait_until(ready, 60, "ready")
    return host


# What --compare runs "as before": each result asks for an upload URL first.
BEFORE: tuple[dict[str, str], bool] = ({}, False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--workers", default="4,16,64")
    ap.add_argument("--parts", type=int, default=100_000)
    ap.add_argument("--claims", type=int, default=300)
    ap.add_argument("--compare", action="store_true", help="also run each count as before, alternating")
    ap.add_argument("--token-cache", type=float, default=0, help="also run with this FRAMEFARM_TOKEN_CACHE_S")
    ap.add_argument("--floor", action="store_true",
                    help="also run each count against gunicorn serving bench/bare_wsgi.py, alternating")
    args = ap.parse_args()
    with scratch("ffbench-sched-") as (root, procs):
        configs = {"now": ({}, True), **({"before": BEFORE} if args.compare else {}),
                   **({"cache": ({"FRAMEFARM_TOKEN_CACHE_S": str(args.token_cache)}, True)} if args.token_cache else {})}
        hosts = {name: (gateway_host(root / name, procs, env), inline) for name, (env, inline) in configs.items()}
        runs: dict[str, list[dict]] = {name: [] for name in configs}
        floor = floor_host(root / "floor", procs) if args.floor else None
        for n in args.workers.split(","):
            for name, ((redis, farm, token, gw), inline) in hosts.items():
                runs[name].append(cycles(root / name, gw, redis, farm, token, int(n), args.seconds, inline))
            if floor is not None:
                runs.setdefault("floor", []).append(cycles(root / "floor", floor, None, None, "-", int(n), args.seconds))
        (redis, farm, token, gw), _ = hosts["now"]
        api = FarmAPI(Client([gw.url], token, discover=False))
        small, big = (claim_latency(api, farm, n, args.claims) for n in (100, args.parts))
        print(f"claim+complete cycles through one gateway host ({os.cpu_count()} cores, fake workers included):")
        for name, rs in runs.items():
            for r in rs:
                print(f"  {name:>6} {r['workers']:>3} workers: {r['cycles_per_s']:7.0f} cycles/s, gateway "
                      f"{r['gateway_ms_per_cycle']:.2f} ms CPU per cycle ({r['gateway_cores']:.2f} cores), redis "
                      f"{r['redis_ms_per_cycle']:.3f} ms, fake workers {r['client_ms_per_cycle']:.2f} ms; "
                      f"all cores busy at these costs: {r['ceiling_per_s']:.0f} cycles/s")
        for name in [n for n in runs if n not in ("before", "floor")]:
            for now, before in zip(runs[name], runs.get("before", [])):
                print(f"  {name} / before, {now['workers']:>3} workers: cycles/s "
                      f"{now['cycles_per_s'] / max(before['cycles_per_s'], 1e-9):.2f}, gateway CPU per cycle "
                      f"{now['gateway_ms_per_cycle'] / before['gateway_ms_per_cycle']:.2f}")
        print(f"claim latency through the gateway (median of {args.claims}): 100 parts {small:.2f} ms, "
              f"{args.parts} parts {big:.2f} ms, ratio {big / small:.2f}")
        print(json.dumps({"cycles": runs, "claim_ms": {"100": small, str(args.parts): big}}))


if __name__ == "__main__":
    main()
