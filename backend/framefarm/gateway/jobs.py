"""Jobs: a submission's rules, recording it with its parts, and reporting on it.

The split into parts is computed here, once, in the order they are handed out
(ordering.py: preview-first or sequential), and handed to staging.py, which writes the spans to Redis (parts.py reads them back).
"""
from __future__ import annotations

import json
import posixpath
import re
import secrets
from dataclasses import dataclass
from typing import Any, cast

from framefarm.common import frameset, output_names
from framefarm.common.blendfile import BlendFileError, read_blend_info

from . import (cleanup, estimates, finishing, framestats, keys, longpoll, ordering, parts, quotas, scene_files, staging,
               stills, webhooks, workers)
from .errors import ApiError, bad_request, not_found
from .farm import Farm
from .longpoll import Waiters
from .parts import ACTIVE

MAX_NAME = 200  # characters of a job's name; openapi.yaml keeps a name sent to it too
# Workers write every manifest path under their scene folder: a name longer than the file
# systems' 255-byte limit, or a path past a bound that leaves room for that folder, would be
# accepted here and then fail on every worker (ENAMETOOLONG). Bytes, not characters.
MAX_PATH_COMPONENT_BYTES = 255
MAX_PATH_BYTES = 1024


@dataclass(frozen=True)
class JobRequest:
    """A submission, checked: what openapi.yaml's JobRequest schema lets through (types, ranges,
    manifest paths and hashes), then the rules a schema cannot say, checked by `from_body`."""

    manifest: dict[str, str]  # relative path -> sha256
    main: str  # a path of the manifest, naming a .blend
    frames: frameset.FrameRange
    name: str
    priority: int = 0
    chunk: int | None = None  # None: chosen from the live workers
    max_frame_seconds: int | None = None  # the longest a frame may take on a worker; None: no limit
    output_format: str | None = None  # Blender's -F name overriding the scene's format; None: the scene's
    target_part_seconds: int | None = None  # parts sized to take about this long (parts.timed); None: the farm's
    finish: finishing.Finish | None = None  # the job's finishing task, run once every frame is in
    still: stills.Still | None = None  # one frame split into pieces (stills.py); None: frames as parts
    notify: str | dict[str, str] | None = None  # a webhook for the job's end (webhooks.py), as sent
    output: dict[str, Any] | None = None  # the frames' names in the zip (output_names.py), checked
    order: str = "preview"  # the order frames are handed out in (ordering.py)
    estimate: bool = False  # render the sample frames only, then wait to be resumed (estimates.py)

    @classmethod
    def from_body(cls, body: dict[str, Any], max_frames: int) -> "JobRequest":
        """The request of a JSON body that the spec accepted (contract.py); 400 for the rest."""
        manifest, main = body["manifest"], body["main"]
        for path in manifest:
            _check_path(path)
        if main not in manifest:
            raise bad_request("main must name the .blend file of the manifest to render", "bad_manifest")
        fr = _frames(body["frames"], body.get("step", 1), max_frames)
        name = body.get("name") or posixpath.basename(main)
        if len(name) > MAX_NAME:  # a name taken from the main file is held to the same limit
            raise bad_request(f"name must be text of at most {MAX_NAME} characters", "bad_name")
        still = stills.Still.from_body(body, fr)
        if body.get("estimate") and still is not None:
            raise bad_request("a still cannot be estimated: it is one frame, whose pieces are the render itself",
                              "bad_estimate")
        return cls(manifest, main, fr, name, body.get("priority", 0), body.get("chunk"),
                   body.get("max_frame_seconds"), body.get("format"),
                   finish=finishing.Finish.from_body(body.get("finish")), still=still,
                   target_part_seconds=body.get("target_part_seconds"), notify=body.get("notify"),
                   order=body.get("order", "preview"), estimate=bool(body.get("estimate")),
                   output=_output(body.get("output")))


def _output(output: dict[str, Any] | None) -> dict[str, Any] | None:
    """The job's `output`, if its pattern is one the client could have made from a scene: 400 for
    one that would name a zip entry outside the job's folder (output_names.check)."""
    if output is None:
        return None
    try:
        output_names.check(output["pattern"])
    except ValueError as e:
        raise bad_request(str(e), "bad_output") from None
    return output


def _check_path(path: str) -> None:
    """400 for a manifest path that no worker could create (the spec already refused
    absolute paths, `..`, backslashes and control characters)."""
    size = len(path.encode("utf-8", "surrogatepass"))
    if size > MAX_PATH_BYTES:
        raise bad_request(f"manifest path {path[:80]!r}... is {size} bytes long; paths are limited to "
                          f"{MAX_PATH_BYTES} bytes (UTF-8)", "bad_manifest")
    for name in path.split("/"):
        size = len(name.encode("utf-8", "surrogatepass"))
        if size > MAX_PATH_COMPONENT_BYTES:
            raise bad_request(f"manifest path {path[:80]!r}: the name {name[:40]!r}... is {size} bytes long; "
                              f"file and folder names are limited to {MAX_PATH_COMPONENT_BYTES} bytes (UTF-8)",
                              "bad_manifest")


def _frames(frames: str | dict[str, int], step: int, max_frames: int) -> frameset.FrameRange:
    """'A-B' or {start, end} (of the spec's forms) as a FrameRange, whose own rules (a range that
    ends before it starts, the frame limits) and the farm's `max_frames` are checked here."""
    try:
        if isinstance(frames, str):
            fr = frameset.parse_frames(frames, step)
        else:
            fr = frameset.FrameRange(frames["start"], frames["end"], step)
    except frameset.FrameSpecError as e:
        raise bad_request(str(e), "bad_frames") from None
    if fr.count > max_frames:
        raise ApiError(413, "too_many_frames", f"{fr.count} frames requested; this farm accepts at most "
                       f"{max_frames} per job (FRAMEFARM_MAX_FRAMES)", limit=max_frames)
    return fr


def create(farm: Farm, owner: str, req: JobRequest, idempotency_key: str | None,
           any_file: bool = False) -> tuple[str, bool]:
    """Record a job. Returns (job id, created); a retried request with the same idempotency
    key (at most 200 characters: openapi.yaml) returns the first job instead of a second one.
    Its files must be ones `owner` uploaded (scene_files.py), or any stored file with `any_file`
    (an admin): another client's file is refused exactly like one never uploaded."""
    manifest, main, fr = req.manifest, req.main, req.frames
    idem = keys.idempotency(owner, idempotency_key) if idempotency_key else ""
    notify = webhooks.target_of(req.notify, owner, farm.settings.webhook_allow_private)

    if req.chunk is not None:
        quotas.check_parts(farm.settings, fr.count, req.chunk, -(-fr.count // req.chunk))
    job_id = secrets.token_hex(6)
    # Held before checking they exist, so clean-up cannot delete one in between (cleanup.py).
    with cleanup.holding_files(farm, job_id, manifest.values()) as hold, \
            quotas.active_job_slot(farm, owner, job_id) as slot:
        missing = sorted(hold.blocked | set(scene_files.missing(farm, None if any_file else owner,
                                                                list(manifest.values()))))
        if missing:
            raise bad_request(f"{len(missing)} file(s) of the manifest were not uploaded by this client",
                              "missing_files", missing=missing)
        try:
            with farm.storage.open_read(keys.scene_file(manifest[main])) as fh:
                info = read_blend_info(fh)
        except BlendFileError as e:
            raise bad_request(f"{main}: {e}", "not_a_blend") from None
        chunk, spans, finish = req.chunk, None, req.finish
        if req.still is not None:  # one frame, a part per piece, merged by the finishing task
            able = workers.capable(farm, info.version)
            req.still.check_mergers(able)  # a denoised still: 409 unless a live worker can merge it
            pieces = req.still.count(len(able))
            chunk, spans, finish = 1, req.still.spans(pieces), req.still.finish(pieces, req.output_format)
        timed = parts.timed(farm.settings, fr.count, req.target_part_seconds) if chunk is None else None
        if timed:  # one part, cut to time as claims take it
            chunk = fr.count
        if chunk is None:
            chunk = max(frameset.auto_chunk(fr.count, len(workers.capable(farm, info.version))),
                        quotas.min_chunk(farm.settings, fr.count))
        fields = {"name": req.name, "main": main, "scene_hash": manifest[main], "priority": req.priority,
                  "start": fr.start, "end": fr.end, "step": fr.step, "frames_total": fr.count,
                  "chunk": chunk, "blender_version": info.version}
        if req.max_frame_seconds:  # Redis stores no None: absent means no limit
            fields["max_frame_seconds"] = req.max_frame_seconds
        if req.output_format:
            fields["format"] = req.output_format
        if req.output and req.still is None:  # a still's image keeps its plain name
            fields["output_pattern"] = req.output["pattern"]
            fields["output_multilayer"] = int(bool(req.output.get("multilayer")))
        if notify:
            fields["notify"] = notify.to_json()
        if timed:
            fields.update(timed)
        if finish:
            fields.update(finish.fields())
        if spans is not None:
            fields[stills.PIECES_FIELD] = len(spans)
            held = 0
        else:  # a still's pieces are one frame: the order does not apply
            fields["order"] = req.order
            plan = ordering.plan(fr, None if timed else chunk, req.order, estimate=req.estimate,
                                 max_parts=farm.settings.max_parts)
            spans, held = plan.spans, len(plan.spans) - plan.samples if req.estimate else 0
            if timed:  # the runs between the first frames are cut separately: room for their ends
                fields["min_frames"] = ordering.min_frames(fr.count, len(spans), farm.settings.max_parts)
            else:  # an estimate's samples split chunks
                quotas.check_parts(farm.settings, fr.count, chunk, len(spans))
            if req.estimate:
                fields.update(estimates.fields(plan))
        record = staging.JobRecord(job_id, owner, idem, info.version, req.priority,
                                   json.dumps(manifest, sort_keys=True), fields)
        jid, created = staging.write(farm, record, fr.step, spans, held=held)
        hold.keep = slot.keep = created  # a repeated request's files and slot are the first job's
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
    if job.get("paused") == "1":
        return "paused: no new parts are handed out until the job is resumed (parts already rendering finish)"
    need = int(job["blender_version"])
    able = workers.capable(farm, need, job["id"])
    if able:  # they can open the scene; a queued finishing part also needs its kind
        return finishing.waiting_reason(job, able)
    live = workers.live(farm)
    if not live:
        return "waiting: no worker is online"
    versions = sorted({_version_text(int(w.get("blender_version", 0))) for w in live})
    if any(int(w.get("blender_version", 0)) >= need for w in live):
        return "waiting: every live worker that can open this scene has failed it twice and is kept away"
    return (f"waiting: the scene was saved by Blender {_version_text(need)} and no live worker runs "
            f"that version or newer (live workers run {', '.join(versions)})")


def view(farm: Farm, job: dict[str, str], *, parts_from: int | None = None) -> dict[str, Any]:
    """The job as clients see it; with `parts_from`, a page of its parts from that index: at
    most the farm's `part_page_size` of them, and `parts_next`, the index the next page starts
    at (None after the last), so a job of 100,000 parts is never one answer of megabytes."""
    stats = framestats.JobStats.of(job)
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
        "max_frame_seconds": int(job["max_frame_seconds"]) if "max_frame_seconds" in job else None,
        "format": job.get("format"),
        "output": {"pattern": job["output_pattern"], "multilayer": job.get("output_multilayer") == "1"}
        if "output_pattern" in job else None,
        "target_part_seconds": int(job["target_ms"]) // 1000 if "target_ms" in job else None,
        "finish": finishing.view(farm, job),
        "paused": job.get("paused") == "1" and job["status"] in ACTIVE,
        "seconds_per_frame": stats.seconds_per_frame,
        "peak_rss_bytes": stats.peak_rss_bytes or None,
        "still": stills.view(job),
        "order": job.get("order", "sequential") if stills.PIECES_FIELD not in job else None,
        "estimate": estimates.view(farm, job),
    }
    if out["still"] is not None:  # every piece renders the frame: it is done once merged
        out["frames"]["done"] = 1 if job["status"] == "done" else 0
    if parts_from is not None:
        total = int(job["parts_total"])
        stop = min(total, parts_from + farm.settings.part_page_size)
        out["part_list"] = parts.part_list(farm.redis, job["id"], parts_from, max(parts_from, stop), job["status"])
        out["parts_next"] = stop if stop < total else None
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


def wait_for_change(farm: Farm, job_id: str, rev: int, wait_s: float, waiters: Waiters,
                    party: str) -> dict[str, str]:
    """The job as soon as its revision differs from `rev`, or after `wait_s` (capped): a
    long-poll (longpoll.py, woken by the job's events), so clients learn of progress at once
    without hammering. Past a cap on waiting requests, 429 unless the job already changed."""
    def changed() -> dict[str, str] | None:
        job = load(farm, job_id, None)
        return job if int(job.get("rev", 0)) != rev else None

    got = longpoll.poll(farm, waiters, party, f"job:{job_id}", changed, min(wait_s, farm.settings.job_wait_max_s))
    return got if got is not None else load(farm, job_id, None)
