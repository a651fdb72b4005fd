"""What preview-first order costs against sequential order, and how much sooner it shows the shot.

The same scene and frames are submitted with `framefarm submit --order preview|sequential --wait`
to a local farm (private redis-server, gunicorn gateway, `--workers` warm `framefarm worker`s),
alternating the orders each round so that a noisy machine hurts both alike. For each run:
the wall time (submit to frames extracted), the parts the job ended with, and the time from
submission until the first, the middle and the last frame were all in (the shot covered end to
end: what an artist looking at the previews waits for). Medians and their ratios are printed,
then the raw numbers as one JSON line.

    python bench/order.py [--rounds 2] [--frames 60] [--size 128] [--samples 64] [--workers 2] [--chunk N]
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

from benchtools import local_farm, scratch
from farmtools import make_scene

from framefarm.gateway import keys

ORDERS = ("sequential", "preview")


def run(env: dict[str, str], r, scene: Path, frames: int, order: str, out: Path, chunk: int | None) -> dict:
    start = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "framefarm.cli", "submit", str(scene), "--frames", f"1-{frames}",
                          "--order", order, *(["--chunk", str(chunk)] if chunk else []), "--wait", "--json",
                          "--output", str(out)], check=True, capture_output=True, text=True, env={**os.environ, **env})
    wall = time.perf_counter() - start
    job = json.loads(res.stdout)
    created = int(r.hget(keys.job(job["id"]), "created_at"))
    total = int(r.hget(keys.job(job["id"]), "parts_total"))
    done_at: dict[int, int] = {}
    for i in range(total):
        p = r.hgetall(keys.part(keys.part_id(job["id"], i)))
        for k in range(int(p[b"count"])):
            done_at[int(p[b"start"]) + k] = int(p[b"done_at"])
    covered = (max(done_at[f] for f in (1, (1 + frames) // 2, frames)) - created) / 1000
    return {"wall": wall, "parts": total, "covered": covered}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--chunk", type=int, default=None, help="frames per part (default: parts sized by time)")
    args = ap.parse_args()
    with scratch("fforder-") as (root, procs):
        env = local_farm(root, procs, args.workers)
        r = procs[0].client()
        scene = make_scene(root / "shot" / "shot.blend", "--animated", "--frames", f"1-{args.frames}",
                           "--size", str(args.size), "--samples", str(args.samples),
                           "--texture", str(root / "shot" / "textures" / "tex.png"))
        runs: dict[str, list[dict]] = {order: [] for order in ORDERS}
        for n in range(args.rounds):
            for order in ORDERS if n % 2 == 0 else reversed(ORDERS):
                got = run(env, r, scene, args.frames, order, root / f"out-{order}-{n}", args.chunk)
                runs[order].append(got)
                print(f"round {n + 1}: {order:<10} wall {got['wall']:6.2f} s, {got['parts']:3d} parts, first/middle/"
                      f"last frames in after {got['covered']:6.2f} s", flush=True)
        med = {order: {k: statistics.median(x[k] for x in runs[order]) for k in ("wall", "parts", "covered")}
               for order in ORDERS}
        s, p = med["sequential"], med["preview"]
        print(f"sequential: wall {s['wall']:.2f} s, {s['parts']:.0f} parts, shot covered after {s['covered']:.2f} s; "
              f"preview: wall {p['wall']:.2f} s, {p['parts']:.0f} parts, shot covered after {p['covered']:.2f} s; "
              f"preview/sequential: wall {p['wall'] / s['wall']:.3f}, covered {p['covered'] / s['covered']:.3f}",
              flush=True)
        print(json.dumps({"cpus": os.cpu_count(), "machine": platform.platform(), "args": vars(args), "runs": runs}))


if __name__ == "__main__":
    main()
