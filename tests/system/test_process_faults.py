"""Faults of the processes the farm runs, each ending with a clear reason and nothing lost.

Real processes throughout: Blender killed as the kernel's OOM killer kills it (SIGKILL
to Blender alone), a worker whose disk fills up (a tmpfs of a few hundred KiB that the
test mounts as its work folder, then enlarges), and a gateway or redis-server frozen
with SIGSTOP (alive, accepting connections, answering nothing).
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from faulttools import blenders_among, check_archive, fields, part_states, rendering, wait_terminal
from farmtools import descendants, skip_or_fail, wait_for
from framefarm.client.submission import submit_scene
from framefarm.common.api import FarmAPI
from framefarm.common.http import Client
from framefarm.gateway import keys

SIZE = 64


def farm_api(cluster, **kwargs) -> FarmAPI:
    return FarmAPI(Client(cluster.urls, cluster.tokens.client, **{"retry_for": 60, **kwargs}))


def blenders(worker) -> list[int]:
    """The worker's Blender processes (inside the sandbox's bwrap, where there is one)."""
    return blenders_among(descendants(worker.pid))


def part_error(r, job_id: str, text: str, timeout: float = 60) -> dict[str, str]:
    """Wait until a part of the job carries an error containing `text`; that part."""
    def find():
        return next((p for p in part_states(r, job_id) if text in p.get("error", "")), None)
    return wait_for(find, timeout, f"a part of {job_id} failing with {text!r}")


def test_blender_killed_by_the_oom_killer_is_retried_with_that_reason(cluster, scenes, redis_client, tmp_path):
    scene = scenes("--animated", "--size", str(SIZE), "--samples", "64")
    cluster.add_gateway()
    worker = cluster.add_worker()
    api = farm_api(cluster)
    job, _ = submit_scene(api, scene, frames="1-2", chunk=2)
    wait_for(lambda: rendering(redis_client, worker) and blenders(worker), 60, "Blender to be rendering")
    for pid in blenders(worker):  # Blender alone, as the OOM killer picks it: not the worker
        os.kill(pid, signal.SIGKILL)
    part = part_error(redis_client, job["id"], "killed (SIGKILL)")
    assert "out of memory" in part["error"], part
    assert worker.alive()
    final = wait_terminal(api, job["id"], 120)
    assert final["status"] == "done", final
    check_archive(api.download_archive(job["id"], tmp_path / "out.zip"), [1, 2], (SIZE, SIZE))
    assert fields(redis_client, keys.part(keys.part_id(job["id"], 0)))["attempts"] == "1"


@contextlib.contextmanager
def small_disk(path: Path, size_kib: int):
    """A tmpfs of `size_kib` KiB at `path`; resize(kib) makes room later. Needs root."""
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(path)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        skip_or_fail(f"cannot mount a small tmpfs for the worker (needs root): {done.stderr.strip()}")

    def resize(kib: int) -> None:
        subprocess.run(["mount", "-o", f"remount,size={kib}k", str(path)], check=True)

    try:
        yield resize
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def leftovers(workdir: Path) -> list[Path]:
    """What a failed part may leave on the worker's disk: partial downloads, half-built
    scene folders, part folders (frames, logs, zips)."""
    return ([p for p in (workdir / "cache" / "files").glob(".*")] +
            [p for p in (workdir / "cache" / "scenes").glob(".*")] +
            list((workdir / "parts").glob("*")))


@pytest.mark.parametrize("where, disk_kib, frames", [
    ("fetching the scene", 256, "1-2"),  # smaller than the scene itself (~520 KiB)
    ("writing frames", 640, "1-40"),  # the scene fits, forty frames do not
])
def test_a_full_disk_releases_the_part_with_that_reason_and_the_worker_goes_on(cluster, scenes, redis_client,
                                                                              tmp_path, where, disk_kib, frames):
    scene = scenes("--animated", "--size", str(SIZE))
    cluster.add_gateway()
    workdir = cluster.root / f"worker-{len(cluster.workers)}"
    with small_disk(workdir, disk_kib) as resize:
        worker = cluster.add_worker()
        api = farm_api(cluster)
        job, _ = submit_scene(api, scene, frames=frames, chunk=40)
        part = part_error(redis_client, job["id"], "this worker's disk is full")
        print(f"disk full while {where}: {part['error'][:300]}")
        # Released, not failed: no attempt counted, and the user sees why in the job's parts.
        assert part["error"].startswith("released by worker "), part
        assert part["attempts"] == "0", part
        shown = api.job(job["id"], parts=True)["part_list"][0]
        assert "this worker's disk is full" in shown["error"] and shown["attempts"] == 0, shown
        # Cleaned up, still running, and claiming nothing while the disk stays full.
        wait_for(lambda: not leftovers(workdir), 10, "the worker to clean up after the part")
        assert worker.alive()
        assert "claiming no part until" in worker.log_path.read_text()
        resize(64 * 1024)  # room again: the same worker renders the part
        final = wait_terminal(api, job["id"], 120)
    assert final["status"] == "done", final
    first, last = (int(x) for x in frames.split("-"))
    check_archive(api.download_archive(job["id"], tmp_path / "out.zip"), list(range(first, last + 1)),
                  (SIZE, SIZE))


def test_a_frozen_gateway_is_left_for_a_live_one_by_clients_and_workers(cluster, scenes, redis_client, tmp_path):
    """SIGSTOP, not a kill: connections are accepted and never answered. Workers and
    clients time out on it and carry on through the other gateway."""
    scene = scenes("--animated", "--size", str(SIZE))
    frozen = cluster.add_gateway()
    cluster.add_gateway()
    cluster.add_worker()
    cluster.wait_registered(1)
    api = farm_api(cluster, read_timeout=5)
    os.killpg(frozen.pid, signal.SIGSTOP)
    try:
        job, _ = submit_scene(api, scene, frames="1-2", chunk=2)
        final = wait_terminal(api, job["id"], 120)
    finally:
        os.killpg(frozen.pid, signal.SIGCONT)
    assert final["status"] == "done", final
    check_archive(api.download_archive(job["id"], tmp_path / "out.zip"), [1, 2], (SIZE, SIZE))


def test_a_frozen_redis_makes_calls_fail_in_time_and_the_farm_resumes(own_cluster, scenes, tmp_path):
    """redis-server stopped with SIGSTOP: gateways answer 503 within their Redis timeout
    instead of holding requests forever; once it runs again the job finishes."""
    c = own_cluster
    scene = scenes("--animated", "--size", str(SIZE))
    c.add_gateway()
    worker = c.add_worker()
    c.wait_registered(1)
    api = farm_api(c)
    job, _ = submit_scene(api, scene, frames="1-6", chunk=2)
    wait_for(lambda: rendering(c.redis.client(), worker), 60, "the worker to be rendering")
    impatient = farm_api(c, retry_for=0, read_timeout=30)
    answered: list[object] = []

    def ask() -> None:
        try:
            answered.append(impatient.job(job["id"]))
        except Exception as e:  # the answer wanted here: an error, in time
            answered.append(e)

    c.redis.signal(signal.SIGSTOP)
    try:
        asking = threading.Thread(target=ask, daemon=True)
        started = time.monotonic()
        asking.start()
        asking.join(timeout=20)
        took = time.monotonic() - started
        assert not asking.is_alive(), "a request to a gateway whose Redis is frozen did not end within 20 s"
        print(f"frozen Redis: the gateway answered in {took:.1f}s: {answered[0]!r}")
        assert getattr(answered[0], "status", None) == 503 or "503" in str(answered[0]), answered
    finally:
        c.redis.signal(signal.SIGCONT)
    final = wait_terminal(api, job["id"], 120)
    assert final["status"] == "done", final
    check_archive(api.download_archive(job["id"], tmp_path / "out.zip"), list(range(1, 7)), (SIZE, SIZE))
