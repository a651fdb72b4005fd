"""Part results in, one zip out.

A worker's result is checked before it counts: a readable zip whose entries are
exactly the part's frames, one each. When a job's last part is in, one gateway
takes the assembly under a lock with a timeout and streams every part into the
final zip (stored, not recompressed: images are already compressed), so memory
stays bounded whatever the job's size. If that gateway dies, its lock expires
and another gateway starts the assembly again; the result is written under its
final key only when complete, so a half-written archive is never served.
"""
from __future__ import annotations

import logging
import lzma
import re
import secrets
import shutil
import tempfile
import zipfile
import zlib
from contextlib import ExitStack
from pathlib import Path

from . import keys
from .errors import bad_request
from .farm import Farm
from .storage import StorageError

log = logging.getLogger("framefarm.gateway.archive")

# Blender's frame names under the `####` pattern the workers use: 0250.png.
_FRAME_NAME = re.compile(r"^(\d{4,})(\.[A-Za-z0-9]{1,8})?$")
LOCK_TTL_S = 60
COPY_BUFFER = 1024 * 1024


def part_result_key(job_id: str, index: int, token: str) -> str:
    # The token is in the name so a late upload of a reassigned part can never
    # overwrite the result that counted.
    return f"parts/{job_id}/{index}-{token}.zip"


def part_upload_key(job_id: str, index: int, token: str, upload_id: str) -> str:
    """Where a result sent straight to storage waits to be checked; under the job's parts,
    so the job's clean-up takes any that were never committed."""
    return f"parts/{job_id}/incoming/{index}-{token}-{upload_id}.zip"


def archive_key(job_id: str) -> str:
    return f"archives/{job_id}.zip"


def download_name(job: dict[str, str]) -> str:
    """The file name a browser saves the archive under."""
    return f"{job.get('name') or job['id']}-{job['id']}.zip".replace("/", "_").replace('"', "")


def frame_of(name: str) -> int | None:
    m = _FRAME_NAME.match(name)
    return int(m.group(1)) if m else None


def check_result(path: Path, frames: list[int]) -> None:
    """Raise a 400 unless the zip at `path` holds exactly `frames`, once each, intact."""
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            seen: dict[int, str] = {}
            for info in infos:
                frame = frame_of(info.filename)
                if frame is None or info.is_dir():
                    raise bad_request(f"unexpected entry {info.filename!r} in the result; "
                                      f"entries must be frame files such as 0001.png", "bad_result")
                if frame in seen:
                    raise bad_request(f"frame {frame} appears twice in the result", "bad_result")
                seen[frame] = info.filename
            expected = set(frames)
            if set(seen) != expected:
                missing = sorted(expected - set(seen))[:10]
                extra = sorted(set(seen) - expected)[:10]
                raise bad_request(f"the result does not hold the part's frames (missing {missing}, "
                                  f"unexpected {extra})", "bad_result")
            broken = zf.testzip()
            if broken is not None:
                raise bad_request(f"{broken} is corrupt in the result zip", "bad_result")
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, NotImplementedError, RuntimeError,
            OSError, zlib.error, lzma.LZMAError) as e:
        # Corrupt compressed data, an unknown compression method or an encrypted entry
        # surface as these, not as BadZipFile; each is the worker's bad zip, not a bug here.
        raise bad_request(f"the result is not a readable zip: {e}", "bad_result") from None


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
    job = {k.decode(): v.decode() for k, v in farm.redis.hgetall(keys.job(job_id)).items()}
    if job.get("status") != "assembling":
        farm.redis.zrem(keys.ASSEMBLY, job_id)
        farm.redis.delete(keys.assembly_lock(job_id))
        return False
    n = int(job["parts_total"])
    pipe = farm.redis.pipeline()
    for i in range(n):
        pipe.hget(keys.part(keys.part_id(job_id, i)), "result")
    results = [r.decode() for r in pipe.execute()]
    log.info("assembling job %s from %d parts", job_id, n)
    key = archive_key(job_id)
    with farm.storage.writer(key) as out, \
            zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zout:
        for result in results:
            with ExitStack() as stack:
                local = farm.storage.local_path(result)
                if local is None:
                    # Remote storage: one part at a time on local disk bounds temp space.
                    tmp = stack.enter_context(tempfile.TemporaryFile())
                    with farm.storage.open_read(result) as src:
                        shutil.copyfileobj(src, tmp, COPY_BUFFER)
                    tmp.seek(0)
                    source = tmp
                else:
                    source = local
                zin = stack.enter_context(zipfile.ZipFile(source))
                for info in zin.infolist():
                    entry = zipfile.ZipInfo(info.filename, date_time=info.date_time)
                    entry.compress_type = zipfile.ZIP_STORED
                    entry.external_attr = 0o644 << 16
                    with zin.open(info) as src, zout.open(entry, "w", force_zip64=info.file_size > 2**31) as dst:
                        shutil.copyfileobj(src, dst, COPY_BUFFER)
            _renew(farm, job_id, token)
    if not farm.scripts.finish_assembly(args=[job_id, token, key]):
        raise LostLock(job_id)
    for result in results:
        farm.storage.delete(result)
    log.info("job %s done: %s", job_id, key)
    return True


MAX_ASSEMBLY_FAILURES = 3


def assemble_pending(farm: Farm) -> None:
    """Background step: assemble jobs waiting for it (including ones whose
    assembling gateway died: their lock has expired). An assembly that keeps
    failing (a part result lost from storage, say) fails its job with the reason
    instead of being retried forever."""
    for raw in farm.redis.zrange(keys.ASSEMBLY, 0, 20):
        job_id = raw.decode()
        try:
            assemble(farm, job_id)
        except LostLock:
            log.warning("lost the assembly lock of job %s to another gateway", job_id)
        except (OSError, StorageError, zipfile.BadZipFile) as e:
            failures = farm.redis.hincrby(keys.job(job_id), "assembly_failures", 1)
            log.error("assembling job %s failed (%d/%d): %s", job_id, failures, MAX_ASSEMBLY_FAILURES, e)
            if failures >= MAX_ASSEMBLY_FAILURES:
                farm.scripts.fail_assembly(args=[job_id, f"assembling the final zip failed: {e}"])
