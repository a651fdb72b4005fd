"""Submitting a scene and following its job: shared by the CLI and the add-on.

Content addressing keeps resubmission cheap: every file is named by its
SHA-256, the farm says which hashes it lacks, and only those are uploaded.
"""
from __future__ import annotations

import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, cast

from framefarm.common.api import FarmAPI
from framefarm.common.api_types import Job, JobRequest, Notify
from framefarm.common.http import FarmError
from . import movies, scene_output
from .formats import IMAGE_FORMATS
from .packing import pack_scene
from .stills import scene_denoises

TERMINAL = ("done", "failed", "cancelled", "expired")  # expired: done, and its zip deleted since


class MissingFiles(FarmError):
    """The scene references files that do not exist. Refused by default (hours of render
    with a pink texture are worse than a question); ``files`` lists every one with the
    data-block that uses it, so the artist can fix them all or submit anyway."""

    def __init__(self, files: list[str]) -> None:
        super().__init__(f"the scene references {len(files)} file(s) that do not exist: "
                         + "; ".join(files), code="missing_files", details={"missing": files})
        self.files = files


@dataclass
class UploadStats:
    files: int = 0
    uploaded_files: int = 0
    uploaded_bytes: int = 0
    total_bytes: int = 0


def submit_scene(api: FarmAPI, blend: Path, *, frames: str, step: int = 1, chunk: int | None = None,
                 priority: int = 0, name: str | None = None, allow_missing: bool = False,
                 on_status: Callable[[str], None] | None = None,
                 on_upload: Callable[[int, int], None] | None = None,
                 idempotency_key: str | None = None, movie: bool = False, keep_frames: bool = False,
                 max_frame_seconds: int | None = None, target_part_seconds: int | None = None,
                 output_format: str | None = None, still: bool = False,
                 pieces: int | None = None, notify: Notify | None = None, order: str | None = None,
                 estimate: bool = False) -> tuple[Job, UploadStats]:
    """Pack `blend` with its dependencies, upload what the farm lacks, submit the job.

    Raises MissingFiles unless `allow_missing`: then the job renders without them, as
    Blender does here. `output_format` (a name of Blender's -F) overrides the scene's.
    `still`: `frames` is one frame, split into `pieces` (None: the farm's choice) that
    several workers render, merged into one image (docs/stills.md). `order`: preview (the farm's
    default: first, last, middle, then bisecting) or sequential. `estimate`: render the sample
    frames only; the job then waits as `estimated` until resumed (docs/estimates.md)."""
    say = on_status or (lambda _msg: None)
    with tempfile.TemporaryDirectory(prefix="framefarm-pack-") as work:
        say(f"tracing the dependencies of {blend.name}")
        packed = pack_scene(Path(blend), Path(work))
        if packed.missing and not allow_missing:
            raise MissingFiles(packed.missing)
        manifest = packed.manifest()
        by_sha = {sha: packed.files[path] for path, sha in manifest.items()}
        stats = UploadStats(files=len(manifest))
        say(f"checking which of {len(by_sha)} file(s) the farm already holds")
        missing = api.missing(sorted(by_sha))
        stats.total_bytes = sum(by_sha[sha].stat().st_size for sha in missing)

        def sent(n: int) -> None:
            stats.uploaded_bytes += n
            if on_upload:
                on_upload(stats.uploaded_bytes, stats.total_bytes)

        for sha in missing:
            say(f"uploading {by_sha[sha].name}")
            api.upload(sha, by_sha[sha], progress=sent)
            stats.uploaded_files += 1
        # A video scene's movie is made on the farm (its frames too with `keep_frames`); `movie`: an
        # MP4 preview of any job's frames (movies.py).
        scene = scene_output.read(blend)
        output_format, finish = movies.plan(video_scene=bool(scene and scene.is_video),
                                            output_format=output_format, movie=movie, keep_frames=keep_frames)
        payload: JobRequest = {"manifest": manifest, "main": packed.main, "frames": frames, "step": step,
                   "priority": priority, "name": name or Path(blend).stem}
        if chunk is not None:
            payload["chunk"] = chunk
        if max_frame_seconds is not None:
            payload["max_frame_seconds"] = max_frame_seconds
        if target_part_seconds is not None:  # parts sized by time; without it, the farm's target
            payload["target_part_seconds"] = target_part_seconds
        if still:
            payload["still"] = True
            if scene_denoises(blend):  # merged where it can be denoised, or refused before rendering
                payload["denoise"] = True
        if pieces is not None:
            payload["pieces"] = pieces
        if notify is not None:  # a webhook for the job's end (docs/notifications.md)
            payload["notify"] = notify
        if order is not None:
            payload["order"] = cast(Any, order)  # the CLI's choices are the spec's enum
        if estimate:
            payload["estimate"] = True
        if output_format is not None:
            if output_format not in IMAGE_FORMATS:  # the gateway refuses it too; say so before uploading
                raise FarmError(f"unknown image format {output_format!r}: use one of {', '.join(IMAGE_FORMATS)}",
                                code="bad_format")
            payload["format"] = cast(Any, output_format)  # checked just above against the spec's enum
        if finish is not None:
            payload["finish"] = cast(Any, finish)  # movies.plan's: of the spec's Finish shape
        output = None if still else scene_output.output_of(scene, output_format)
        if output is not None:  # frames named as a local render names them (output_names.py)
            payload["output"] = cast(Any, output)
        job = api.submit(payload, idempotency_key or str(uuid.uuid4()))
    return job, stats


def follow(api: FarmAPI, job_id: str, on_update: Callable[[Job], None] | None = None,
           poll_s: float = 25.0, until: tuple[str, ...] = TERMINAL) -> Job:
    """Long-poll a job until it ends (or reaches a status of `until`); calls `on_update` with
    each new state."""
    job = api.job(job_id)
    while True:
        if on_update:
            on_update(job)
        if job["status"] in until:
            return job
        job = api.job(job_id, wait=poll_s, rev=job["rev"])
