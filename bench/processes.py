"""Does splitting a part over several Blender processes pay off?

The worker may render one part with 1, 2 or 4 Blender processes at once
(`render.process_policy`). Each process pays Blender's start-up and scene load,
but while one saves a frame or syncs the scene another renders, so small,
quick frames can gain. This renders the same frames with each process count,
rounds alternating, and prints each count's median time relative to one process.

    python bench/processes.py [--frames 24] [--size 128] [--samples 8] [--rounds 2]
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import time

from benchtools import scratch
from farmtools import make_scene  # the tests' helper, on the path through benchtools
from framefarm.common.frameset import FrameRange
from framefarm.worker.render import probe_blender, process_policy, render_frames


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--counts", default="1,2,4")
    args = ap.parse_args()
    with scratch("ffproc-") as (root, _):
        scene = make_scene(root / "shot.blend", "--animated", "--frames", f"1-{args.frames}",
                           "--size", str(args.size), "--samples", str(args.samples))
        info = probe_blender("blender")
        frames = FrameRange(1, args.frames)
        counts = [int(c) for c in args.counts.split(",")]
        times: dict[int, list[float]] = {c: [] for c in counts}
        for n in range(args.rounds):
            for c in counts:
                out = root / f"out-{c}-{n}"
                start = time.perf_counter()
                render_frames(info, scene, frames, out, device="CPU", processes=c)
                times[c].append(time.perf_counter() - start)
                print(f"round {n + 1}: {c} process(es) {times[c][-1]:7.2f} s", flush=True)
                shutil.rmtree(out)
        base = statistics.median(times[counts[0]])
        print(f"{args.frames} frames at {args.size}px, {args.samples} samples, {os.cpu_count()} CPUs; "
              f"policy picks {process_policy(args.frames, os.cpu_count() or 1)}")
        for c in counts:
            m = statistics.median(times[c])
            print(f"  {c} process(es): {m:6.2f} s  ratio to {counts[0]}: {m / base:.3f}")


if __name__ == "__main__":
    main()

