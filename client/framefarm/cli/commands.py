"""Client commands: submit, jobs, status, cancel, download."""
from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

from framefarm.client import config, submission
from framefarm.common.api import FarmAPI, extract_frames
from framefarm.common import frameset
from framefarm.common.blendfile import BlendFileError, read_blend_info

from .usage import UsageError


def _api(args) -> FarmAPI:
    return config.resolve(args.gateways, args.token).api()


class Progress:
    """A one-line progress bar on a terminal; plain lines when piped (for logs)."""

    def __init__(self, stream=sys.stderr) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self._last = ""

    def show(self, text: str) -> None:
        if text == self._last:
            return
        self._last = text
        if self.tty:
            self.stream.write("\r\033[K" + text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def done(self) -> None:
        if self.tty and self._last:
            self.stream.write("\n")
            self.stream.flush()


def bar(done: int, total: int, width: int = 30) -> str:
    filled = int(width * done / total) if total else width
    return "[" + "#" * filled + "-" * (width - filled) + "]"


def size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""


def job_line(job: dict) -> str:
    f = job["frames"]
    text = f"{bar(f['done'], f['total'])} {f['done']}/{f['total']} frames  {job['status']}"
    if job.get("waiting_reason"):
        text += f"  ({job['waiting_reason']})"
    return text


def submit(args) -> int:
    scene = Path(args.scene)
    try:
        frameset.parse_frames(args.frames, args.step)
        for name in ("chunk",):
            if getattr(args, name) is not None and getattr(args, name) < 1:
                raise frameset.FrameSpecError(f"--{name} must be 1 or more")
    except frameset.FrameSpecError as e:
        raise UsageError(str(e)) from None
    if not scene.is_file():
        raise UsageError(f"{scene}: no such file")
    try:
        read_blend_info(scene)
    except BlendFileError as e:
        raise UsageError(f"{scene}: {e}") from None
    api = _api(args)
    progress = Progress()
    job, stats = submission.submit_scene(
        api, scene, frames=args.frames, step=args.step, chunk=args.chunk, priority=args.priority,
        name=args.name, allow_missing=args.allow_missing,
        on_upload=lambda sent, total: progress.show(f"uploading {bar(sent, total)} {size(sent)} of {size(total)}"))
    progress.done()
    print(f"submitted job {job['id']}: {job['frames']['total']} frames in {job['parts']['total']} parts "
          f"({stats.uploaded_files} of {stats.files} files uploaded)", file=sys.stderr)
    if not args.wait:
        _print_job(job, args.json)
        return 0
    return _wait_and_fetch(api, job, Path(args.output) if args.output else None, args.json)


def _wait_and_fetch(api: FarmAPI, job: dict, output: Path | None, as_json: bool) -> int:
    progress = Progress()
    job = submission.follow(api, job["id"], on_update=lambda j: progress.show(job_line(j)))
    progress.done()
    if job["status"] != "done":
        _print_job(job, as_json)
        print(f"job {job['id']} {job['status']}: {job.get('error') or ''}".rstrip(": "), file=sys.stderr)
        return 1
    output = output or Path(f"{_safe(job['name'])}-{job['id']}")
    frames = _fetch(api, job["id"], output)
    job["output"] = str(output.resolve())
    if as_json:
        print(json.dumps(job, indent=2))
    else:
        print(f"{len(frames)} frames in {output.resolve()}")
    return 0


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "job"


def _fetch(api: FarmAPI, job_id: str, output: Path) -> list[Path]:
    with tempfile.TemporaryDirectory(prefix="framefarm-dl-") as tmp:
        archive = api.download_archive(job_id, Path(tmp) / f"{job_id}.zip")
        return extract_frames(archive, output)


def _print_job(job: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(job, indent=2))
        return
    f = job["frames"]
    print(f"{job['id']}  {job['status']:<10} {f['done']}/{f['total']} frames  {job['name']}")
    for key in ("error", "waiting_reason", "download_url"):
        if job.get(key):
            print(f"  {key.replace('_', ' ')}: {job[key]}")


def jobs(args) -> int:
    items = _api(args).jobs()
    if args.json:
        print(json.dumps(items, indent=2))
        return 0
    if not items:
        print("no jobs")
    for job in items:
        created = time.strftime("%Y-%m-%d %H:%M", time.localtime(job["created_at"] / 1000))
        f = job["frames"]
        print(f"{job['id']}  {created}  {job['status']:<10} {f['done']:>6}/{f['total']:<6} {job['name']}")
    return 0


def status(args) -> int:
    api = _api(args)
    job = api.job(args.job)
    if args.wait:
        progress = Progress()
        job = submission.follow(api, args.job, on_update=lambda j: progress.show(job_line(j)))
        progress.done()
    _print_job(job, args.json)
    return 0 if not args.wait or job["status"] == "done" else 1


def cancel(args) -> int:
    job = _api(args).cancel(args.job)
    _print_job(job, args.json)
    return 0


def download(args) -> int:
    api = _api(args)
    output = Path(args.output)
    if args.zip:
        path = api.download_archive(args.job, output / f"{args.job}.zip")
        print(path.resolve())
        return 0
    frames = _fetch(api, args.job, output)
    print(f"{len(frames)} frames in {output.resolve()}")
    return 0
