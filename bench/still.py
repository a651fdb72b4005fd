"""What does splitting one still cost, and what would it gain?

Renders one frame of a scene sized to take about a minute: once with plain Blender
(`blender -b scene.blend -f 1`, as F12 and save), then as a split still on a local farm
(private redis-server, gunicorn gateway, `framefarm worker`s: what `framefarm up` starts)
with `framefarm submit --still 1 --pieces N --wait` for N = 1, 2 and 4, one worker per
piece, upload, pieces, merge, assembly and download included. Each time is printed with
its ratio to plain Blender's.

On one machine the workers share its cores, so more pieces cannot be faster: the ratios
show what splitting and merging cost (each piece loads the scene and builds Cycles' BVH;
the merge loads the scene and composites). On separate machines each piece renders 1/N
of the rows, so the render part shrinks about N times, the costs above stay.

    python bench/still.py [--size 640] [--samples 96] [--rounds 1]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path
from typing import Callable

from benchtools import local_farm, scratch
from farmtools import framefarm_cli, make_scene  # the tests' helpers, on the path through benchtools

PIECES = (1, 2, 4)


def timed(run: Callable[[], object], out: Path, expected: list[str]) -> float:
    """Seconds `run` took; it must leave exactly `expected` in `out`."""
    start = time.perf_counter()
    run()
    elapsed = time.perf_counter() - start
    assert sorted(p.name for p in out.iterdir()) == expected, sorted(out.iterdir())
    return elapsed


def render(scene: Path, pieces: int, out: Path, env: dict[str, str]) -> float:
    """Plain Blender's F12 and save (`pieces` 0), or a still of `pieces` on the farm."""
    if pieces == 0:
        cmd = ["blender", "-b", str(scene), "-o", f"{out}/####", "-f", "1"]
        return timed(lambda: subprocess.run(cmd, check=True, capture_output=True), out, ["0001.png"])
    args = ["submit", str(scene), "--still", "1", "--pieces", str(pieces), "--wait", "--output", str(out)]
    return timed(lambda: framefarm_cli(*args, env=env, timeout=1800).check_returncode(), out, ["0001.png"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for option, default in (("--size", 640), ("--samples", 96), ("--rounds", 1)):
        ap.add_argument(option, type=int, default=default)
    args = ap.parse_args()
    with scratch("ffbench-") as (root, procs):
        scene = make_scene(root / "scene" / "still.blend", "--frames", "1-1", "--size", str(args.size),
                           "--samples", str(args.samples))
        env = local_farm(root, procs, max(PIECES))  # one slot each: a piece per worker
        times: dict[str, list[float]] = {"plain": [], **{f"{n} piece(s)": [] for n in PIECES}}
        for n in range(args.rounds):
            for kind in times:
                out = root / f"out-{kind.split()[0]}-{n}"
                t = render(scene, 0 if kind == "plain" else int(kind.split()[0]), out, env)
                times[kind].append(t)
                print(f"round {n + 1}: {kind:<12} {t:7.2f} s", flush=True)
        base = statistics.median(times["plain"])
        print(json.dumps({"size": args.size, "samples": args.samples, "cpus": os.cpu_count(),
                          "machine": platform.platform(), "times_s": times}))
        for kind, values in times.items():
            t = statistics.median(values)
            print(f"{kind:<12} {t:7.2f} s   ratio to plain Blender {t / base:.2f}")


if __name__ == "__main__":
    main()
