"""How much slower is the farm than plain Blender on the same machine, with Blender started
afresh for every part (cold), kept warm between parts, and with the worker's defaults?

For each scenario, the same scene and frames are rendered, side by side in each round:
- plain: `blender -b scene.blend -o out/#### -s 1 -e N -a`, one process;
- cold: `framefarm submit --wait` on a local farm (private redis-server, gunicorn gateway)
  with one `framefarm worker --no-warm --no-prefetch`;
- warm: the same with one `framefarm worker --no-prefetch` (warm Blender);
- prefetch: the same with one `framefarm worker --slots 1` (warm Blender, and each next part
  claimed, its scene fetched, while the current part renders);
- default: the same with one `framefarm worker` as users start it: as prefetch, with `--slots
  auto` (two parts at once on a CPU with two cores or more, render.slot_policy);
upload, splitting, rendering, checking, assembling, downloading and extracting included. The
worker of each kind is started and registered before its clock starts, and stopped after.
Rounds alternate the kinds so that a noisy machine hurts all alike; ratios of the medians are
printed.

Scenarios: `quick`, 60 frames of about 0.15 s (scripts/make_scene.py, 128 px); `slow-load`,
40 frames of a scene that takes seconds to load (bench/heavy_scene.py: a finely subdivided grid).

    python bench/overhead.py [--scenarios quick,slow-load] [--rounds 2] [--frames 60] [--size 128]
        [--samples 64] [--slow-frames 40] [--grid 800] [--chunk N] [--order preview|sequential]
        [--kinds plain,cold,warm,prefetch,default]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchtools import REPO, scratch
from farmtools import make_scene, wait_for  # the tests' helpers, on the path through benchtools

from framefarm.gateway import keys
from framefarm.gateway.auth import create_token
from framefarm.gateway.localfarm import GatewayProcess, RedisServer, WorkerProcess, free_port

KINDS = ("plain", "cold", "warm", "prefetch", "default")
# Each farm kind's worker: its slots (None: the worker's own `auto`) and options.
WORKERS = {"cold": (1, ["--no-warm", "--no-prefetch"]), "warm": (1, ["--no-prefetch"]), "prefetch": (1, []),
           "default": (None, [])}
RATIOS = [("cold", "plain"), ("warm", "plain"), ("prefetch", "plain"), ("default", "plain"), ("warm", "cold"),
          ("prefetch", "warm"), ("default", "prefetch")]  # printed where both kinds ran


def plain(scene: Path, frames: int, out: Path) -> float:
    start = time.perf_counter()
    subprocess.run(["blender", "-b", str(scene), "-o", f"{out}/####", "-s", "1", "-e", str(frames), "-a"],
                   check=True, capture_output=True)
    elapsed = time.perf_counter() - start
    assert len(list(out.iterdir())) == frames
    return elapsed


class Farm:
    """One redis-server and gateway; a worker of the kind asked for, per run."""

    def __init__(self, root: Path, procs: list) -> None:
        self.root, self.procs = root, procs
        self.redis = RedisServer(root / "redis", root / "redis.log").start()
        procs.append(self.redis)
        r = self.redis.client()
        self.worker_token, client_token = create_token(r, "worker"), create_token(r, "client")
        self.gateway = GatewayProcess(free_port(), self.redis.url, f"file://{root / 'storage'}",
                                      root / "gateway.log")
        procs.append(self.gateway.start())
        self.env = {"FRAMEFARM_GATEWAYS": self.gateway.url, "FRAMEFARM_TOKEN": client_token,
                    "FRAMEFARM_HOME": str(root / "home")}
        self.runs = 0

    def render(self, kind: str, scene: Path, frames: int, out: Path, chunk: int | None = None,
               order: str | None = None) -> float:
        self.runs += 1
        r = self.redis.client()
        slots, flags = WORKERS[kind]
        worker = WorkerProcess(f"bench-{kind}-{self.runs}", [self.gateway.url], self.worker_token,
                               self.root / f"w-{self.runs}", self.root / f"w-{self.runs}.log", device="CPU",
                               slots=slots, extra=flags).start()
        try:
            wait_for(lambda: r.zcard(keys.WORKERS) == 1, 60, "the worker to register")
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "framefarm.cli", "submit", str(scene), "--frames", f"1-{frames}",
                            *(["--chunk", str(chunk)] if chunk else []), *(["--order", order] if order else []),
                            "--wait", "--output", str(out)],
                           check=True, capture_output=True,
                           env={**os.environ, **self.env})
            elapsed = time.perf_counter() - start
        finally:
            worker.stop()
            wait_for(lambda: r.zcard(keys.WORKERS) == 0, 30, "the worker to unregister")
        assert len(list(out.iterdir())) == frames
        return elapsed


def scenario_scene(name: str, root: Path, args: argparse.Namespace) -> tuple[Path, int]:
    if name == "quick":
        scene = make_scene(root / "quick" / "shot.blend", "--animated", "--frames", f"1-{args.frames}",
                           "--size", str(args.size), "--samples", str(args.samples),
                           "--texture", str(root / "quick" / "textures" / "tex.png"))
        return scene, args.frames
    scene = make_scene(root / "heavy" / "heavy.blend", "--grid", str(args.grid), "--frames", f"1-{args.slow_frames}",
                       script=REPO / "bench" / "heavy_scene.py")
    return scene, args.slow_frames


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenarios", default="quick,slow-load")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--slow-frames", type=int, default=40)
    ap.add_argument("--grid", type=int, default=800)
    ap.add_argument("--chunk", type=int, default=None,
                    help="frames per part (default: the farm sizes parts by their measured time)")
    ap.add_argument("--order", choices=("preview", "sequential"), default=None,
                    help="the order the farm hands frames out in (default: the farm's, preview first)")
    ap.add_argument("--kinds", default=",".join(KINDS),
                    help="the kinds to run, plain among them (the ratios are to plain)")
    args = ap.parse_args()
    kinds = args.kinds.split(",")
    if "plain" not in kinds or not set(kinds) <= set(KINDS):
        ap.error(f"--kinds: plain and any of {', '.join(KINDS[1:])}")
    with scratch("ffbench-") as (root, procs):
        farm = Farm(root, procs)
        results = {}
        for name in args.scenarios.split(","):
            scene, frames = scenario_scene(name, root, args)
            times: dict[str, list[float]] = {kind: [] for kind in kinds}
            for n in range(args.rounds):
                for kind in kinds:
                    out = root / f"out-{name}-{kind}-{n}"
                    t = (plain(scene, frames, out) if kind == "plain"
                         else farm.render(kind, scene, frames, out, args.chunk, args.order))
                    times[kind].append(t)
                    print(f"{name} round {n + 1}: {kind:<8} {t:7.2f} s", flush=True)
            med = {kind: statistics.median(times[kind]) for kind in kinds}
            results[name] = {"frames": frames, "times": times, "medians": med}
            print(f"{name}: " + ", ".join(f"{kind} {t:.2f} s" for kind, t in med.items()) + "; " + ", ".join(
                f"{a}/{b} = {med[a] / med[b]:.3f}" for a, b in RATIOS if a in med and b in med), flush=True)
        print(json.dumps({"cpus": os.cpu_count(), "machine": platform.platform(), "args": vars(args),
                          "results": results}))


if __name__ == "__main__":
    main()
