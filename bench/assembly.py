"""How fast is the final zip assembled, next to a plain copy of the same bytes?

Each round stages two identical jobs (random, incompressible frames; see
tests/assemblytools.py), then, in fresh processes, assembles one job's parts into its
final zip with `archive.assemble` and copies the other job's part objects, byte for
byte, into one object with `shutil.copyfileobj`: the same bytes read from and written to
the same storage. The order alternates between rounds so that neither always finds the
page cache warmer, and each starts after a sync. Printed: each run's throughput and peak memory, and the ratio of the
medians (assembly time / copy time, and the same for CPU time, which a disk that
throttles bursts of writes, as cloud VMs' disks do, does not blur).

    python bench/assembly.py [--gib 1] [--frame-mib 8] [--chunk 8] [--rounds 4] [--gcs]

--gcs runs against gcp-storage-emulator instead of a local folder; the emulator is much
slower than Cloud Storage and keeps every object in memory, so use a fraction of a GiB.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
from dataclasses import dataclass

from benchtools import scratch
from assemblytools import random_pool, run_child, stage_job  # shared with the tests
from farmtools import make_scene

from framefarm.gateway.localfarm import RedisServer
from framefarm.gateway.app import create_app
from framefarm.gateway.auth import create_token
from framefarm.gateway.config import Settings

MB = 1024 * 1024


@dataclass
class Tokens:
    client: str
    worker: str


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gib", type=float, default=1.0, help="frames per job, in GiB")
    ap.add_argument("--frame-mib", type=int, default=8, help="size of one frame file")
    ap.add_argument("--chunk", type=int, default=8, help="frames per part")
    ap.add_argument("--rounds", type=int, default=4, help="even, so each goes first as often")
    ap.add_argument("--gcs", action="store_true", help="use gcp-storage-emulator as the storage")
    args = ap.parse_args()
    frames = max(args.chunk, int(args.gib * 1024 / args.frame_mib))
    with scratch("ffbench-asm-") as (root, procs):
        redis_server = RedisServer(root / "redis", root / "redis.log").start()
        procs.append(redis_server)
        r = redis_server.client()
        tokens = Tokens(create_token(r, "client"), create_token(r, "worker"))
        env = {"FRAMEFARM_REDIS_URL": redis_server.url}
        if args.gcs:
            from gcstools import Emulator

            emulator = Emulator(root / "gcs").start()
            procs.append(emulator)
            env.update(emulator.client_env())
            os.environ.update(emulator.client_env())
            env["FRAMEFARM_STORAGE"] = emulator.storage_url("bench")
        else:
            env["FRAMEFARM_STORAGE"] = f"file://{root / 'storage'}"
        http = create_app(Settings(redis_url=env["FRAMEFARM_REDIS_URL"], storage=env["FRAMEFARM_STORAGE"],
                                   max_frames=1_000_000)).test_client()
        farm = http.application.extensions["framefarm"]
        scene = make_scene(root / "scene" / "shot.blend").read_bytes()
        pool = random_pool()
        runs: dict[str, list] = {"assembly": [], "copy": []}
        for n in range(args.rounds):
            def stage():
                return stage_job(http, tokens, scene, frames=frames, chunk=args.chunk,
                                 frame_size=args.frame_mib * MB, pool=pool)

            for_copy, for_assembly = stage(), stage()
            size = for_assembly.total_bytes
            order = ("copy", "assembly") if n % 2 == 0 else ("assembly", "copy")
            for kind in order:
                os.sync()  # start each run with no dirty pages from the last one to write back
                if kind == "copy":
                    run = run_child(env, "copy", f"bench/copy-{n}.bin", *for_copy.results)
                else:
                    run = run_child(env, "assemble", for_assembly.job_id)
                runs[kind].append(run)
                print(f"round {n + 1}: {kind:<8} {size / MB / run.seconds:7.1f} MB/s  {run.seconds:6.2f} s  "
                      f"CPU {run.cpu_seconds:6.2f} s  peak RSS {run.peak_rss_mb:5.1f} MB", flush=True)
            farm.storage.delete(f"bench/copy-{n}.bin")
            farm.storage.delete(f"archives/{for_assembly.job_id}.zip")
            for key in for_copy.results:
                farm.storage.delete(key)
        a, c = (statistics.median(r.seconds for r in runs[k]) for k in ("assembly", "copy"))
        a_cpu, c_cpu = (statistics.median(r.cpu_seconds for r in runs[k]) for k in ("assembly", "copy"))
        report = {"storage": "gcs-emulator" if args.gcs else "local", "bytes": size, "frames": frames,
                  "frame_mib": args.frame_mib, "parts": len(for_assembly.results), "cpus": os.cpu_count()}
        for kind, measured in runs.items():
            report[f"{kind}_s"] = [round(r.seconds, 3) for r in measured]
            report[f"{kind}_cpu_s"] = [round(r.cpu_seconds, 3) for r in measured]
            report[f"{kind}_peak_rss_mb"] = max(round(r.peak_rss_mb, 1) for r in measured)
        print(json.dumps(report))
        print(f"{size / MB:.0f} MB: assembly {size / MB / a:.0f} MB/s, plain copy {size / MB / c:.0f} MB/s: "
              f"assembly/copy time = {a / c:.2f}, CPU time = {a_cpu / c_cpu:.2f}")


if __name__ == "__main__":
    main()
