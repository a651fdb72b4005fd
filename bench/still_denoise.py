"""What does denoising a split still once, after the merge, cost, and how close is it?

One frame of `scripts/make_scene.py`'s scene, with Cycles' denoising on and off, on the bpy
back end (a Blender with OpenImageDenoise: Debian's 3.4 has none), one step at a time as a
farm runs them: Blender's own single render of the frame, then the still's pieces
(`render_frames` with `still_piece`, one after another) and their merge (`merge_still`,
`--rounds` times). Prints each time, the ratios of denoised to plain, and how far the
denoised merge is from Blender's own denoised render (8-bit PNG values: largest difference
and RMS), beside how far Blender's undenoised render is from it (the noise removed).

    python bench/still_denoise.py [--bpy-python PATH] [--size 640] [--samples 16] [--pieces 4] [--rounds 2]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path

from PIL import Image

from benchtools import scratch
from farmtools import make_scene  # the tests' helpers, on the path through benchtools
from framefarm.common.frameset import PartSpan
from framefarm.worker.bpy_backend import write_launcher
from framefarm.worker.render import probe_blender, render_frames
from framefarm.worker.still_merge import merge_still

FRAME = 1


def single(launcher: Path, scene: Path, out: Path) -> tuple[float, Path]:
    """Blender's own render of the frame (the launcher knows -a, not -f): seconds, file."""
    start = time.perf_counter()
    subprocess.run([str(launcher), "-b", "--factory-startup", str(scene), "-o", f"{out}/####", "-x", "1",
                    "-s", str(FRAME), "-e", str(FRAME), "-a"], check=True, capture_output=True)
    return time.perf_counter() - start, next(out.iterdir())


def difference(a: Path, b: Path) -> dict[str, float]:
    """Largest and RMS difference of two 8-bit RGBA images, in levels of 1/255."""
    pa, pb = (Image.open(p).convert("RGBA").tobytes() for p in (a, b))
    diffs = [abs(x - y) for x, y in zip(pa, pb, strict=True)]
    return {"max": max(diffs) / 255, "rms": math.sqrt(sum(d * d for d in diffs) / len(diffs)) / 255}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bpy-python", default=os.environ.get("FRAMEFARM_BPY_PYTHON"),
                    help="a Python with the bpy wheel (default: $FRAMEFARM_BPY_PYTHON)")
    for option, default in (("--size", 640), ("--samples", 16), ("--pieces", 4), ("--rounds", 2)):
        ap.add_argument(option, type=int, default=default)
    args = ap.parse_args()
    if not args.bpy_python:
        ap.error("no bpy Python: pass --bpy-python or set FRAMEFARM_BPY_PYTHON")
    with scratch("ffbench-denoise-") as (root, _procs):
        launcher = write_launcher(args.bpy_python, root / "bpy" / "blender-bpy")
        info = probe_blender(str(launcher))
        single_s: dict[str, float] = {}
        pieces_s: dict[str, float] = {}
        merges_s: dict[str, list[float]] = {}
        piece_bytes: dict[str, int] = {}
        files: dict[str, Path] = {}
        for kind in ("plain", "denoised"):
            scene = make_scene(root / kind / "still.blend", "--frames", f"{FRAME}-{FRAME}", "--size", str(args.size),
                               "--samples", str(args.samples), *(["--denoise"] if kind == "denoised" else []))
            single_s[kind], files[f"single {kind}"] = single(launcher, scene, root / kind / "single")
            start = time.perf_counter()
            pieces = {i: render_frames(info, scene, PartSpan(i, FRAME, 1, 1), root / kind / f"piece-{i}",
                                       still_piece={"index": i, "of": args.pieces, "frame": FRAME,
                                                    **({"denoise": True} if kind == "denoised" else {})})[0]
                      for i in range(args.pieces)}
            pieces_s[kind] = time.perf_counter() - start
            merges = merges_s[kind] = []
            for n in range(args.rounds):
                start = time.perf_counter()
                files[f"merged {kind}"] = merge_still(info, scene, pieces, root / kind / f"merged-{n}", frame=FRAME)[0]
                merges.append(time.perf_counter() - start)
            piece_bytes[kind] = sum(p.stat().st_size for p in pieces.values())
            print(f"{kind:<9} single render {single_s[kind]:6.1f} s   {args.pieces} pieces {pieces_s[kind]:6.1f} s   merge "
                  f"{statistics.median(merges):6.1f} s (median of {args.rounds})", flush=True)
        close = difference(files["single denoised"], files["merged denoised"])
        noise = difference(files["single denoised"], files["single plain"])
        print(json.dumps({"blender": info.version_string, "size": args.size, "samples": args.samples,
                          "pieces": args.pieces, "cpus": os.cpu_count(), "machine": platform.platform(),
                          "single_s": single_s, "pieces_s": pieces_s, "merges_s": merges_s,
                          "piece_bytes": piece_bytes, "merged_vs_single_denoised": close,
                          "undenoised_vs_denoised": noise}))
        merge = {kind: statistics.median(values) for kind, values in merges_s.items()}
        for step, values in (("single", single_s), ("pieces", pieces_s), ("merge", merge)):
            print(f"{step:<7} denoised / plain {values['denoised'] / values['plain']:5.2f}")
        print(f"denoised merge vs Blender's denoised render: max {close['max'] * 255:.0f}/255, RMS {close['rms']:.6f}; "
              f"Blender's undenoised render vs it: max {noise['max'] * 255:.0f}/255, RMS {noise['rms']:.6f}")


if __name__ == "__main__":
    main()
