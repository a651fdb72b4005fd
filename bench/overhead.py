"""How much slower is the farm than plain Blender on the same machine?

Renders the same scene and frames twice per round, side by side: once with
plain `blender -b scene.blend -o out/#### -s 1 -e N -a`, once with
`framefarm submit --wait` on a local farm (private redis-server, gunicorn
gateway, `framefarm worker` processes) -- upload, splitting, rendering,
checking, assembling, downloading and extracting included. Rounds alternate the
two so that a noisy machine hurts both alike; the ratio of the medians is printed.

    python bench/overhead.py [--frames 100] [--size 256] [--samples 32] [--rounds 2] [--workers 1]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchtools import scratch
from farmtools import make_scene, wait_for  # the tests' helpers, on the path through benchtools

from framefarm.gateway.localfarm import GatewayProcess, RedisServer, WorkerProcess, free_port
from framefarm.gateway.auth import create_token
from framefarm.gateway import keys


def plain(scene: Path, frames: int, out: Path) -> float:
    start = time.perf_counter()
    subprocess.run(["blender", "-b", str(scene), "-o", f"{out}/####", "-s", "1", "-e", str(frames), "-a"],
                   check=True, capture_output=True)
    elapsed = time.perf_counter() - start
    assert len(list(out.iterdir())) == frames
    return elapsed


def farm(scene: Path, frames: int, out: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "framefarm.cli", "submit", str(scene), "--frames", f"1-{frames}",
                    "--wait", "--output", str(out)], check=True, capture_output=True, env={**os.environ, **env})
    elapsed = time.perf_counter() - start
    assert len(list(out.iterdir())) == frames
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--samples", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args()
    with scratch("ffbench-") as (root, procs):
        scene = make_scene(root / "scene" / "shot.blend", "--animated", "--frames", f"1-{args.frames}",
                           "--size", str(args.size), "--samples", str(args.samples),
                           "--texture", str(root / "scene" / "textures" / "tex.png"))
        redis_server = RedisServer(root / "redis", root / "redis.log").start()
        procs.append(redis_server)
        r = redis_server.client()
        worker_token, client_token = create_token(r, "worker"), create_token(r, "client")
        gw = GatewayProcess(free_port(), redis_server.url, f"file://{root / 'storage'}", root / "gateway.log")
        procs.append(gw.start())
        for i in range(args.workers):
            procs.append(WorkerProcess(f"bench-{i}", [gw.url], worker_token, root / f"w{i}", root / f"w{i}.log",
                                       device="CPU").start())
        wait_for(lambda: r.zcard(keys.WORKERS) == args.workers, 60, "the workers to register")
        env = {"FRAMEFARM_GATEWAYS": gw.url, "FRAMEFARM_TOKEN": client_token, "FRAMEFARM_HOME": str(root / "home")}
        times: dict[str, list[float]] = {"plain": [], "farm": []}
        for n in range(args.rounds):
            for kind in ("plain", "farm"):
                out = root / f"out-{kind}-{n}"
                t = plain(scene, args.frames, out) if kind == "plain" else farm(scene, args.frames, out, env)
                times[kind].append(t)
                print(f"round {n + 1}: {kind:<5} {t:7.2f} s", flush=True)
        p, f = statistics.median(times["plain"]), statistics.median(times["farm"])
        print(json.dumps({"frames": args.frames, "size": args.size, "samples": args.samples,
                          "workers": args.workers, "cpus": os.cpu_count(), "plain_s": times["plain"],
                          "farm_s": times["farm"]}))
        print(f"plain Blender {p:.2f} s, farm {f:.2f} s: farm/plain = {f / p:.3f} "
              f"({(f / p - 1) * 100:+.1f}%)")


if __name__ == "__main__":
    main()
