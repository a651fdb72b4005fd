"""Assembling a big job keeps the assembling process's memory bounded, whatever the job's size.

The job is staged with real API calls and the real `complete` script (assemblytools.py),
then assembled by `archive.assemble` in a fresh Python process whose peak resident memory
the kernel reports (VmHWM). Frames are random, so nothing compresses; every entry of the
final zip is checked against the frame it came from by size and CRC-32.
"""
from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from assemblytools import archive_entries, run_child, stage_job
from farmtools import skip_or_fail
from framefarm.gateway import keys
from framefarm.gateway.app import create_app

MB = 1024 * 1024
PEAK_LIMIT_MB = 100


def need_free_disk(path: Path, needed: int) -> None:
    free = shutil.disk_usage(path).free
    if free < needed:
        skip_or_fail(f"needs {needed / 2**30:.1f} GiB free under {path}, has {free / 2**30:.1f} GiB")


def child_env(settings) -> dict[str, str]:
    return {"FRAMEFARM_REDIS_URL": settings.redis_url, "FRAMEFARM_STORAGE": settings.storage}


def assemble_and_check(http, settings, staged, extra_env: dict[str, str] | None = None):
    farm = http.application.extensions["framefarm"]
    run = run_child({**child_env(settings), **(extra_env or {})}, "assemble", staged.job_id)
    mb = staged.total_bytes / MB
    print(f"\nassembled {mb:.0f} MB from {len(staged.results)} parts in {run.seconds:.1f} s "
          f"({mb / run.seconds:.0f} MB/s); peak RSS {run.peak_rss_mb:.1f} MB "
          f"(after imports and connecting: {run.baseline_rss_mb:.1f} MB)")
    assert run.result["done"] is True
    assert farm.redis.hget(keys.job(staged.job_id), "status") == "done"
    assert list(archive_entries(farm, staged.job_id).items()) == list(staged.frames.items())
    assert not any(farm.storage.exists(key) for key in staged.results), "part objects left behind"
    return run


def test_the_memory_measurement_sees_what_a_process_holds(settings):
    """The probe itself: a child that holds 200 MB is measured above it."""
    run = run_child(child_env(settings), "hold", "200")
    assert run.peak_rss_mb > 200 + run.baseline_rss_mb * 0.5


@pytest.mark.big
def test_a_2_gib_job_is_assembled_in_under_100_mb_of_memory(http, tokens, scenes, settings, tmp_path):
    frames, frame_size, chunk = 256, 8 * MB, 8  # 2 GiB in 32 parts of 64 MiB
    need_free_disk(tmp_path, 3 * frames * frame_size)
    try:
        staged = stage_job(http, tokens, scenes("--no-texture").read_bytes(), frames=frames, chunk=chunk,
                           frame_size=frame_size)
        run = assemble_and_check(http, settings, staged)
        assert run.peak_rss_mb < PEAK_LIMIT_MB
    finally:  # pytest keeps the last runs' temporary folders: leave no gigabytes there
        shutil.rmtree(http.application.extensions["framefarm"].storage.root, ignore_errors=True)


def test_a_job_in_cloud_storage_is_assembled_in_under_100_mb_of_memory(gcs, settings, tokens, scenes):
    """Smaller (256 MiB): the emulator keeps every object in its own memory and writes at
    ~80 MB/s. Still far more than the limit, and each part (64 MiB) is more than the
    headroom above the client library's own footprint, so buffering a part would show."""
    settings = dataclasses.replace(settings, storage=gcs.storage_url())
    http = create_app(settings).test_client()
    staged = stage_job(http, tokens, scenes("--no-texture").read_bytes(), frames=32, chunk=8,
                       frame_size=8 * MB)
    run = assemble_and_check(http, settings, staged, gcs.client_env())
    assert run.peak_rss_mb < PEAK_LIMIT_MB
