"""Big jobs for assembly tests and bench/assembly.py: staged fast, assembled in a child process.

`stage_job` records a real job through the gateway's API (upload, submit, register,
claim every part) and then, instead of sending each part's frames through a request
body, writes the part's zip straight into storage and completes the part with the real
`complete` Lua script, which is what the result endpoint does once the zip has passed its
check. So gigabytes of frames are staged at disk speed, and the job is in exactly the
state the last worker's upload would leave it in: `assembling`.

Frames are slices of one random pool at different offsets: incompressible, all
different, and made at memory speed rather than at the speed of a random generator.

`run_child` runs one operation (the assembly, or a plain copy of the same bytes) in a
fresh Python process and reads that process's peak resident memory from the kernel
(VmHWM), so nothing the test process holds is counted.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
import zlib
from contextlib import ExitStack
from dataclasses import dataclass, field

from framefarm.gateway import archive, keys

POOL_BYTES = 64 * 1024 * 1024
BLOCK = 1024 * 1024


@dataclass
class StagedJob:
    job_id: str
    results: list[str]  # the part objects, in part order
    frames: dict[str, tuple[int, int]] = field(default_factory=dict)  # entry name -> (size, crc32)

    @property
    def total_bytes(self) -> int:
        return sum(size for size, _ in self.frames.values())


def random_pool(size: int = POOL_BYTES) -> bytes:
    return os.urandom(size)


def frame_bytes(pool: bytes, frame: int, size: int) -> memoryview:
    """`size` bytes of the pool starting at an offset of its own for each frame."""
    assert size <= len(pool) // 2, "the pool must be at least twice a frame"
    start = (frame * 1_000_003) % (len(pool) - size)
    return memoryview(pool)[start:start + size]


def stage_job(http, tokens, scene: bytes, *, frames: int, chunk: int, frame_size: int,
              pool: bytes | None = None) -> StagedJob:
    """A job of `frames` frames of `frame_size` bytes each, every part's result in storage,
    waiting for its assembly. `http` is a Flask test client of a gateway app."""
    from farmtools import sha256

    farm = http.application.extensions["framefarm"]
    pool = pool if pool is not None else random_pool()
    client = {"Authorization": f"Bearer {tokens.client}"}
    worker = {"Authorization": f"Bearer {tokens.worker}"}
    sha = sha256(scene)
    assert http.put(f"/v1/files/{sha}", data=scene, headers=client).status_code in (200, 201)
    job = http.post("/v1/jobs", json={"manifest": {"shot.blend": sha}, "main": "shot.blend",
                                      "frames": f"1-{frames}", "chunk": chunk}, headers=client).get_json()
    wid = http.post("/v1/workers", json={"blender_version": "3.4.1"}, headers=worker).get_json()["id"]
    staged = StagedJob(job["id"], [])
    for _ in range(job["parts"]["total"]):
        part = http.post(f"/v1/workers/{wid}/claim", json={"wait": 0}, headers=worker).get_json()["part"]
        key = keys.part_result(job["id"], part["index"], part["token"])
        with farm.storage.writer(key) as out, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zf:
            for frame in part["frames"]:
                data = frame_bytes(pool, frame, frame_size)
                name = f"{frame:04d}.png"
                with zf.open(zipfile.ZipInfo(name), "w", force_zip64=True) as entry:
                    for i in range(0, len(data), BLOCK):
                        entry.write(data[i:i + BLOCK])
                staged.frames[name] = (len(data), zlib.crc32(data))
        status = farm.scripts.complete(args=[part["id"], part["token"], part["worker"], key])
        assert status[0] == "ok", status
        staged.results.append(key)
    assert farm.redis.hget(keys.job(job["id"]), "status") == "assembling"
    return staged


def archive_entries(farm, job_id: str) -> dict[str, tuple[int, int]]:
    """Entry name -> (size, crc32) of the job's final zip, read from its central directory;
    the assembly computed each CRC from the bytes it streamed, so equal CRCs mean equal bytes."""
    key = keys.archive(job_id)
    with ExitStack() as stack:
        local = farm.storage.local_path(key)
        if local is None:  # a remote object: spool it, as zipfile seeks to the central directory
            src = stack.enter_context(farm.storage.open_read(key))
            fh = stack.enter_context(tempfile.TemporaryFile())
            shutil.copyfileobj(src, fh, BLOCK)
            fh.seek(0)
        else:
            fh = stack.enter_context(open(local, "rb"))
        with zipfile.ZipFile(fh) as zf:
            return {i.filename: (i.file_size, i.CRC) for i in zf.infolist()}


@dataclass
class ChildRun:
    seconds: float  # the operation alone, timed inside the child (not its start-up)
    cpu_seconds: float  # the CPU time the operation took (user and system)
    peak_rss_mb: float  # the child's peak resident memory (VmHWM), from the kernel
    baseline_rss_mb: float  # its resident memory once imports and connections were done
    result: dict


def run_child(env: dict[str, str], *args: str, timeout: float = 600) -> ChildRun:
    """Run `python assemblytools.py ARGS...` with `env` added (FRAMEFARM_REDIS_URL,
    FRAMEFARM_STORAGE, and for GCS the emulator's variables)."""
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **env})
    assert proc.returncode == 0, f"child {args} failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    return ChildRun(report["seconds"], report["cpu_seconds"], report["peak_rss_kb"] / 1024, report["baseline_rss_kb"] / 1024, report)


def _status_kb(field: str) -> int:
    """A memory figure of this process from /proc/self/status. VmHWM (peak resident set)
    starts afresh at exec, unlike getrusage's ru_maxrss, which also counts the parent's
    image that the child was forked from before it exec'ed Python."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _child(argv: list[str]) -> None:
    """In the child: `assemble JOB_ID`, `copy DEST_KEY SRC_KEY...` (the plain copy of the same
    bytes), or `hold MB` (allocates that much: the check that the measurement sees memory)."""
    from framefarm.gateway.config import Settings
    from framefarm.gateway.farm import Farm

    farm = Farm.from_settings(Settings.from_env())
    farm.redis.ping()
    baseline = _status_kb("VmRSS")
    start, cpu_start = time.perf_counter(), time.process_time()
    if argv[0] == "assemble":
        result = {"done": archive.assemble(farm, argv[1])}
    elif argv[0] == "copy":
        with farm.storage.writer(argv[1]) as out:
            for key in argv[2:]:
                with farm.storage.open_read(key) as src:
                    shutil.copyfileobj(src, out, BLOCK)
            result = {"bytes": out.tell()}
    elif argv[0] == "hold":
        held = bytearray(int(argv[1]) * 1024 * 1024)
        held[::4096] = b"x" * len(held[::4096])  # touch every page, so it is resident
        result = {"held": len(held)}
    else:
        raise SystemExit(f"unknown operation {argv[0]!r}")
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    print(json.dumps({**result, "seconds": seconds, "cpu_seconds": cpu, "baseline_rss_kb": baseline, "peak_rss_kb": _status_kb("VmHWM")}))


if __name__ == "__main__":
    _child(sys.argv[1:])
