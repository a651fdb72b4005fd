"""Jobs: validating a submission, recording it with its parts, and reporting on it.

The split into parts is computed here, once, by `frameset.split`, and handed to
staging.py, which writes the spans to Redis (parts.py reads them back).
"""
from __future__ import annotations

import json
import posixpath
import re
import secrets
import time
from typing import Any, cast

from framefarm.common import frameset
from framefarm.common.blendfile import BlendFileError, read_blend_info

from . import cleanup, keys, parts, scene_files, staging, workers
from .errors import ApiError, bad_request, not_found
from .farm import Farm
from .parts import ACTIVE

MAX_MANIFEST_FILES = 20_000


def _int(payload: dict, name: str, default: int | None, lo: int, hi: int) -> int | None:
    value = payload.get(name, default)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise bad_request(f"{name} must be a whole number, got {value!r}", "bad_" + name)
    if not lo <= value <= hi:
        raise bad_request(f"{name} must be between {lo} and {hi}, got {value}", "bad_" + name)
    return value


def _manifest(payload: dict) -> tuple[dict[str, str], str]:
    manifest = payload.get("manifest")
    main = payload.get("main")
    if not isinstance(manifest, dict) or not manifest:
        raise bad_request("manifest must be a non-empty object of relative path -> sha256", "bad_manifest")
    if len(manifest) > MAX_MANIFEST_FILES:
        raise bad_request(f"a job may hold at most {MAX_MANIFEST_FILES} files", "bad_manifest")
    for path, sha in manifest.items():
        norm = posixpath.normpath(path) if isinstance(path, str) else ""
        if (norm == "." or norm != path or path.startswith("/") or norm.startswith("..")
                or "\\" in path or "\x00" in path):
            raise bad_request(f"manifest path {path!r} must be a plain relative path", "bad_manifest")
        if not isinstance(sha, str):
            raise bad_request(f"manifest hash for {path!r} must be a string", "bad_manifest")
        scene_files.check_sha(sha)
    if not isinstance(main, str) or main not in manifest:
        raise bad_request("main must name the .blend file of the manifest to render", "bad_manifest")
    if not main.lower().endswith(".blend"):
        raise bad_request(f"main file {main!r} is not a .blend file", "not_a_blend")
    return manifest, main


def _frames(payload: dict, max_frames: int) -> frameset.FrameRange:
    step = _int(payload, "step", 1, 1, frameset.MAX_FRAME) or 1
    frames = payload.get("frames")
    try:
        if isinstance(frames, str):
            fr = frameset.parse_frames(frames, step)
        elif isinstance(frames, dict):
            # FrameRange refuses anything but whole numbers, with a message that says so.
            fr = frameset.FrameRange(cast(int, frames.get("start")), cast(int, frames.get("end")), step)
        else:
            raise frameset.FrameSpecError("frames must be 'A-B' or {\"start\": A, \"end\": B}")
    except frameset.FrameSpecError as e:
        raise bad_request(str(e), "bad_frames") from None
    if fr.count > max_frames:
        raise bad_request(f"{fr.count} frames requested; this farm accepts at most {max_frames} per job",
                          "too_many_frames")
    return fr


def create(farm: Farm, owner: str, payload: Any, idempotency_key: str | None) -> tuple[str, bool]:
    """Validate and record a job. Returns (job id, created); a retried request with
    the same idempotency key returns the first job instead of a second one."""
    if not isinstance(payload, dict):
        raise bad_request("the body must be a JSON object")
    manifest, main = _manifest(payload)
    fr = _frames(payload, farm.settings.max_frames)
    priority = _int(payload, "priority", 0, -1000, 1000) or 0
    name = payload.get("name") or posixpath.basename(main)
    if not isinstance(name, str) or len(name) > 200:
        raise bad_request("name must be text of at most 200 characters", "bad_name")
    chunk = _int(payload, "chunk", None, 1, frameset.MAX_FRAME)
    idem = ""
    if idempotency_key:
        if len(idempotency_key) > 200:
            raise bad_request("Idempotency-Key is too long", "bad_idempotency_key")
        idem = keys.idempotency(owner, idempotency_key)

    job_id = secrets.token_hex(6)
    # Held before checking they exist, so clean-up cannot delete one in between (cleanup.py).
    with cleanup.holding_files(farm, job_id, manifest.values()) as hold:
        missing = sorted(hold.blocked | {sha for sha in manifest.values()
                                         if not farm.storage.exists(keys.scene_file(sha))})
        if missing:
            raise bad_request(f"{len(missing)} file(s) of the manifest were not uploaded", "missing_files",
                              missing=missing)
        try:
            with farm.storage.open_read(keys.scene_file(manifest[main])) as fh:
                info = read_blend_info(fh)
        except BlendFileError as e:
            raise bad_request(f"{main}: {e}", "not_a_blend") from None
        if chunk is None:
            chunk = frameset.auto_chunk(fr.count, len(workers.capable(farm, info.version)))
        fields = {"name": name, "main": main, "scene_hash": manifest[main], "priority": priority,
                  "start": fr.start, "end": fr.end, "step": fr.step, "frames_total": fr.count,
                  "chunk": chunk, "blender_version": info.version}
        record = staging.JobRecord(job_id, owner, idem, info.version, priority, json.dumps(manifest, sort_keys=True),
                           fields)
        jid, created = staging.write(farm, record, fr.step, frameset.split(fr, chunk))
        hold.keep = created  # a repeated request's files are held by the first job
    return jid, created


def load(farm: Farm, job_id: str, owner: str | None) -> dict[str, str]:
    """The job's raw fields; another client's job is reported as not found."""
    job = cast(dict[str, str], farm.redis.hgetall(keys.job(job_id))) if re.match(r"^[0-9a-f]{12}$", job_id or "") else {}
    if not job or (owner is not None and job.get("owner") != owner):
        raise not_found(f"job {job_id}")
    return job


def manifest_of(farm: Farm, job_id: str) -> dict[str, str]:
    return json.loads(farm.redis.get(keys.manifest(job_id)) or "{}")


def _version_text(v: int) -> str:
    return f"{v // 100}.{v % 100}"


def waiting_reason(farm: Farm, job: dict[str, str]) -> str | None:
    """Why a job is not progressing, when no live worker can take its parts."""
    if job["status"] not in ACTIVE:
        return None
    need = int(job["blender_version"])
    if workers.capable(farm, need, job["id"]):
        return None
    live = workers.live(farm)
    if not live:
        return "waiting: no worker is online"
    versions = sorted({_version_text(int(w.get("blender_version", 0))) for w in live})
    if any(int(w.get("blender_version", 0)) >= need for w in live):
        return "waiting: every live worker that can open this scene has failed it twice and is kept away"
    return (f"waiting: the scene was saved by Blender {_version_text(need)} and no live worker runs "
            f"that version or newer (live workers run {', '.join(versions)})")


def view(farm: Farm, job: dict[str, str], *, with_parts: bool = False) -> dict[str, Any]:
    """The job as clients see it."""
    out: dict[str, Any] = {
        "id": job["id"], "name": job.get("name", ""), "status": job["status"],
        "priority": int(job.get("priority", 0)), "rev": int(job.get("rev", 0)),
        "frames": {"start": int(job["start"]), "end": int(job["end"]), "step": int(job["step"]),
                   "total": int(job["frames_total"]), "done": int(job.get("frames_done", 0))},
        "parts": {"total": int(job["parts_total"]), "done": int(job.get("parts_done", 0)),
                  "chunk": int(job["chunk"])},
        "blender_version": _version_text(int(job["blender_version"])),
        "created_at": int(job["created_at"]),
        "started_at": int(job["started_at"]) if "started_at" in job else None,
        "finished_at": int(job["finished_at"]) if "finished_at" in job else None,
        "error": job.get("error"),
        "waiting_reason": waiting_reason(farm, job),
    }
    if with_parts:
        out["part_list"] = parts.part_list(farm.redis, job["id"], int(job["parts_total"]), job["status"])
    return out


def list_for(farm: Farm, owner: str | None, limit: int = 100) -> list[dict[str, str]]:
    index = keys.ALL_JOBS if owner is None else keys.owner_jobs(owner)
    pipe = farm.redis.pipeline()
    for jid in farm.redis.zrevrange(index, 0, limit - 1):
        pipe.hgetall(keys.job(jid))
    return [job for job in pipe.execute() if job]


def cancel(farm: Farm, job: dict[str, str]) -> str:
    res = farm.scripts.cancel(args=[job["id"]])
    if res[0] == "cancelled":
        return "cancelled"
    status = res[1]
    if status == "cancelled":
        return status
    raise ApiError(409, "wrong_state", f"job {job['id']} is {status} and cannot be cancelled")


def holds_file(farm: Farm, job_id: str, sha: str) -> bool:
    """Whether `sha` is one of the job's scene files (so a worker leasing its part may fetch it)."""
    return bool(farm.redis.sismember(keys.files_held(job_id), sha))


def wait_for_change(farm: Farm, job_id: str, rev: int, wait_s: float) -> dict[str, str]:
    """The job as soon as its revision differs from `rev`, or after `wait_s` (capped): a
    long-poll, so clients learn of progress at once without hammering."""
    deadline = time.monotonic() + min(wait_s, farm.settings.job_wait_max_s)
    while True:
        gen = farm.notifier.generation(f"job:{job_id}")
        job = load(farm, job_id, None)
        left = deadline - time.monotonic()
        if int(job.get("rev", 0)) != rev or left <= 0 or farm.notifier.closing:
            return job
        farm.notifier.wait(f"job:{job_id}", gen, min(left, 2.0))
