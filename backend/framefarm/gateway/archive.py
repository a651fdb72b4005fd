"""Part results in, one zip out (results are checked before they count: results.py).

When a job's last part is in, one gateway
takes the assembly under a lock with a timeout and streams every part into the
final zip (stored, not recompressed: images are already compressed), so memory
stays bounded whatever the job's size. If that gateway dies, its lock expires
and another gateway starts the assembly again; the result is written under its
final key only when complete, so a half-written archive is never served.
"""
from __future__ import annotations

import logging
import secrets
import shutil
import tempfile
import time
import zipfile
from contextlib import ExitStack
from pathlib import Path
from typing import IO, cast

from framefarm.common import output_names

from . import finishing, framestats, keys, metrics, results as part_results
from .dashboard import meta
from .farm import Farm
from .storage import StorageError

log = logging.getLogger("framefarm.gateway.archive")

LOCK_TTL_S = 60
# app.extensions: a threading.Event that wakes this process's assembler now (app.py), set by the
# request that counted a job's last result; other processes' assemblers find the job on their tick.
DUE = "framefarm.assembly_due"
COPY_BUFFER = 1024 * 1024


def _renew(farm: Farm, job_id: str, token: str) -> None:
    if not farm.scripts.renew_lock(args=[keys.assembly_lock(job_id), token, LOCK_TTL_S * 1000]):
        raise LostLock(job_id)


class LostLock(RuntimeError):
    """Another gateway took over this assembly (ours took too long); stop writing."""


def assemble(farm: Farm, job_id: str) -> bool:
    """Assemble one job if no other gateway is doing it. True when it is done."""
    token = secrets.token_hex(8)
    if not farm.redis.set(keys.assembly_lock(job_id), token, nx=True, ex=LOCK_TTL_S):
        return False
    job = cast(dict[str, str], farm.redis.hgetall(keys.job(job_id)))
    if job.get("status") != "assembling":
        farm.redis.zrem(keys.ASSEMBLY, job_id)
        farm.redis.delete(keys.assembly_lock(job_id))
        return False
    n = int(job["parts_total"])
    pipe = farm.redis.pipeline()
    for i in range(n):
        pipe.hget(keys.part(keys.part_id(job_id, i)), "result")
    results: list[str] = pipe.execute()
    sources = finishing.archive_results(farm, job, results)  # with a finishing task: its result too
    frame_sources = set(sources[:-1] if finishing.kind_of(job) else sources)  # the finishing result comes last
    log.info("assembling job %s from %d parts", job_id, n)
    kept = meta.Keeper(farm, job_id)
    key = keys.archive(job_id)
    with farm.storage.writer(key) as out, \
            zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zout:
        for result in sources:
            with ExitStack() as stack:
                source: Path | IO[bytes] | None = farm.storage.local_path(result)
                if source is None:
                    # Remote storage: one part at a time on local disk bounds temp space.
                    tmp = stack.enter_context(tempfile.TemporaryFile())
                    with farm.storage.open_read(result) as src:
                        shutil.copyfileobj(src, tmp, COPY_BUFFER)
                    tmp.seek(0)
                    source = tmp
                zin = stack.enter_context(zipfile.ZipFile(source))
                for info in zin.infolist():
                    if framestats.is_meta(info.filename):
                        kept.add(zin, info)  # the worker's measurements and previews: the dashboard's
                        continue  # ... not the artist's
                    name = _entry_name(job, info.filename) if result in frame_sources else info.filename
                    entry = zipfile.ZipInfo(name, date_time=info.date_time)
                    entry.compress_type = zipfile.ZIP_STORED
                    entry.external_attr = 0o644 << 16
                    with zin.open(info) as src, zout.open(entry, "w", force_zip64=info.file_size > 2**31) as dst:
                        shutil.copyfileobj(src, dst, COPY_BUFFER)
                    finishing.keep_movie(farm, job, result, zin, info)  # an encode job's movie: its own link
            _renew(farm, job_id, token)
    kept.write()
    if not _finish(farm, job_id, token, key):
        raise LostLock(job_id)
    for result in dict.fromkeys([*results, *sources]):
        farm.storage.delete(result)
    log.info("job %s done: %s", job_id, key)
    return True


def _entry_name(job: dict[str, str], name: str) -> str:
    """A frame's name in the final zip: as the scene's output path names it (the job's
    `output_pattern`, checked when the job was submitted: output_names.py), else the worker's
    (0250.png)."""
    pattern = job.get("output_pattern")
    frame = part_results.frame_of(name) if pattern else None
    return name if pattern is None or frame is None else output_names.entry_name(pattern, frame)


MAX_ASSEMBLY_FAILURES = 3


def assemble_pending(farm: Farm) -> None:
    """Background step: assemble jobs waiting for it (including ones whose
    assembling gateway died: their lock has expired). An assembly that keeps
    failing (a part result lost from storage, say) fails its job with the reason
    instead of being retried forever."""
    for job_id in cast(list[str], farm.redis.zrange(keys.ASSEMBLY, 0, 20)):
        try:
            started = time.monotonic()
            if assemble(farm, job_id):
                metrics.assembled(time.monotonic() - started)
        except LostLock:
            log.warning("lost the assembly lock of job %s to another gateway", job_id)
        except (OSError, StorageError, zipfile.BadZipFile) as e:
            failures = farm.redis.hincrby(keys.job(job_id), "assembly_failures", 1)
            log.error("assembling job %s failed (%d/%d): %s", job_id, failures, MAX_ASSEMBLY_FAILURES, e)
            if failures >= MAX_ASSEMBLY_FAILURES:
                _fail(farm, job_id, f"assembling the final zip failed: {e}")


def _finish(farm: Farm, job_id: str, token: str, key: str) -> bool:
    """lua/finish_assembly.lua: mark the job done with its archive, if we still hold the lock."""
    return bool(farm.scripts.finish_assembly(args=[job_id, token, key]))


def _fail(farm: Farm, job_id: str, message: str) -> bool:
    """lua/fail_assembly.lua: end an assembling job as failed, with the reason."""
    return bool(farm.scripts.fail_assembly(args=[job_id, message]))
