"""Client commands: submit, estimate, jobs, status, cancel, pause, resume, retry, priority, download; an admin's
workers, drain and undrain."""
from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, TextIO

from rich.console import Console
from rich.progress import (BarColumn, DownloadColumn, MofNCompleteColumn, Progress, ProgressColumn, Task,
                           TextColumn, TimeRemainingColumn, TransferSpeedColumn)
from rich.text import Text

from framefarm.client import config, stills, submission
from framefarm.common.api import FarmAPI, extract_frames
from framefarm.common.api_types import Job
from framefarm.common import frameset
from framefarm.common.blendfile import BlendFileError, read_blend_info

from .usage import UsageError


def _api(args) -> FarmAPI:
    return config.from_args(args).api()


# Frames finish seconds to minutes apart: judge the rate over the last ten minutes.
FRAME_RATE_WINDOW_S = 600.0


class FrameRateColumn(ProgressColumn):
    """Frames per minute (a farm's frames take seconds to minutes each)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed * 60:.1f} frames/min" if speed else "-- frames/min", style="progress.data.speed")


class Meter:
    """How far an upload or a job has got, on stderr.

    On a terminal: a rich bar with the count, the rate and the time left, redrawn in
    place. On a pipe (a log, CI) or with --json: no bar and no control codes, only a
    plain line when something a reader cares about changes (uploads in 10% steps).
    `clock` is for tests: rate and ETA come from the times it returns.
    """

    def __init__(self, kind: str, *, stream: TextIO | None = None, live: bool | None = None,
                 clock: Callable[[], float] | None = None) -> None:
        if kind not in ("upload", "frames"):
            raise ValueError(f"unknown meter {kind!r}")
        self.kind = kind
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty() if live is None else live
        columns = ((TextColumn("uploading"), BarColumn(), DownloadColumn(binary_units=True),
                    TransferSpeedColumn(), TimeRemainingColumn()) if kind == "upload" else
                   (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("frames"),
                    FrameRateColumn(), TimeRemainingColumn()))
        self.bars = Progress(*columns, console=Console(file=self.stream), disable=not self.live,
                             speed_estimate_period=30.0 if kind == "upload" else FRAME_RATE_WINDOW_S,
                             get_time=clock)
        self.task = self.bars.add_task(kind, total=None)
        self._last = ""
        self._shown = False

    def _update(self, completed: int, total: int, description: str | None = None) -> None:
        self.bars.update(self.task, completed=completed, total=total, description=description)
        if self.live and not self._shown:  # drawn from the first news on, not while packing
            self._shown = True
            self.bars.start()

    def upload(self, sent: int, total: int) -> None:
        self._update(completed=sent, total=total)
        if not self.live:
            step = sent * 10 // total * 10 if total else 100
            self._line(f"uploading {step}% ({size(sent)} of {size(total)})", key=str(step))

    def job(self, job: Job) -> None:
        f = job["frames"]
        status = job["status"] + (f" ({job['waiting_reason']})" if job.get("waiting_reason") else "")
        still = job.get("still")
        if still:  # one frame: its pieces say how far it got
            status += f", {still['pieces_done']}/{still['pieces']} pieces"
        self._update(completed=f["done"], total=f["total"], description=status)
        if not self.live:
            line = f"{f['done']}/{f['total']} frames  {status}"
            task = self.bars.tasks[0]
            if task.speed and f["done"] < f["total"]:
                line += f"  {task.speed * 60:.1f} frames/min  about {duration(task.time_remaining or 0)} left"
            self._line(line, key=f"{f['done']}/{f['total']} {status}")

    def _line(self, text: str, key: str) -> None:
        if key != self._last:
            self._last = key
            self.stream.write(text + "\n")
            self.stream.flush()

    def close(self) -> None:
        if self._shown:
            self.bars.stop()


def size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""


def duration(seconds: float) -> str:
    """'45s', '12m05s', '3h02m'."""
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def _checked(args, frames_text: str) -> tuple[Path, frameset.FrameRange]:
    """The scene and frames of submit or estimate, checked before anything is packed (exit 2)."""
    scene = Path(args.scene)
    try:
        frames = frameset.parse_frames(frames_text, args.step)
        if args.chunk is not None and args.chunk < 1:
            raise frameset.FrameSpecError("--chunk must be 1 or more")
        if getattr(args, "max_frame_time", None) is not None and args.max_frame_time < 1:
            raise frameset.FrameSpecError("--max-frame-time must be 1 second or more")
        if args.part_time is not None and not 10 <= args.part_time <= 86400:
            raise frameset.FrameSpecError("--part-time must be 10 to 86400 seconds")
    except frameset.FrameSpecError as e:
        raise UsageError(str(e)) from None
    if not scene.is_file():
        raise UsageError(f"{scene}: no such file")
    try:
        read_blend_info(scene)
    except BlendFileError as e:
        raise UsageError(f"{scene}: {e}") from None
    return scene, frames


def _submit(api: FarmAPI, args, scene: Path, frames: frameset.FrameRange, **options: Any) -> Job:
    """Pack, upload and submit with the options submit and estimate share; `options`: the rest."""
    meter = Meter("upload", live=False if args.json else None)
    try:
        job, stats = submission.submit_scene(
            api, scene, frames=frames.text(), step=frames.step, chunk=args.chunk, priority=args.priority,
            name=args.name, allow_missing=args.allow_missing, on_upload=meter.upload,
            target_part_seconds=args.part_time, output_format=args.format, order=args.order, **options)
    finally:
        meter.close()
    print(f"submitted job {job['id']}: {job['frames']['total']} frames in {job['parts']['total']} parts "
          f"({stats.uploaded_files} of {stats.files} files uploaded)", file=sys.stderr)
    return job


def submit(args) -> int:
    scene, frames = _checked(args, _frames_text(args, Path(args.scene)))
    api = _api(args)
    job = _submit(api, args, scene, frames, movie=args.movie, keep_frames=args.keep_frames,
                  max_frame_seconds=args.max_frame_time, still=args.still is not None, pieces=args.pieces,
                  notify={"url": args.notify, "format": args.notify_format} if args.notify else None)
    if not args.wait:
        _print_job(job, args.json)
        return 0
    return _wait_and_fetch(api, job, Path(args.output) if args.output else None, args.json)


def estimate(args) -> int:
    """Submit the scene as an estimate, wait for its samples, print what the rest would take."""
    scene, frames = _checked(args, args.frames)
    api = _api(args)
    job = _submit(api, args, scene, frames, estimate=True)
    meter = Meter("frames", live=False if args.json else None)
    try:
        job = submission.follow(api, job["id"], on_update=meter.job, until=("estimated", *submission.TERMINAL))
    finally:
        meter.close()
    if job["status"] != "estimated":
        _print_job(job, args.json)
        print(f"job {job['id']} {job['status']}: {job.get('error') or ''}".rstrip(": "), file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(job, indent=2))
    else:
        print(estimate_text(job))
    return 0


def estimate_text(job: Job) -> str:
    """An estimate as an artist reads it, with how the projection is made."""
    est = job.get("estimate")
    if not est:
        return f"job {job['id']}: no estimate yet ({job['status']})"
    spf = est["seconds_per_frame"]
    left = est.get("frames_left", job["frames"]["total"] - len(est["samples"]))
    lines = [f"estimate of job {job['id']} ({job['name']}): {job['frames']['total']} frames, sampled at "
             f"{', '.join(str(f) for f in est['samples'])}",
             f"  seconds per frame: {spf['min']:.2f} min, {spf['mean']:.2f} mean, {spf['max']:.2f} max"]
    if est["peak_rss_bytes"]:
        lines.append(f"  peak memory: {size(est['peak_rss_bytes'])}")
    if est["projected_seconds"] is None:
        lines.append(f"  the other {left} frames: no live worker can take them now")
    else:
        lines.append(f"  the other {left} frames: about {duration(est['projected_seconds'])} with the "
                     f"{est['workers']} worker(s) online now ({left} frames x {spf['mean']:.2f} s / "
                     f"{est['workers']} workers, in whole parts, plus a scene load each)")
    if est["cost"] is not None:
        lines.append(f"  cost: {est['cost']:.2f} {est['currency']} (at {est['price_per_worker_hour']} "
                     f"{est['currency']} per worker-hour)")
    lines.append(f"render the rest: framefarm resume {job['id']}   (or cancel: framefarm cancel {job['id']})")
    return "\n".join(lines)


def _frames_text(args, scene: Path) -> str:
    """The frames to render: --frames, or a still's frame (--still FRAME, else the scene's current one)."""
    if args.still is None:
        if args.pieces is not None:
            raise UsageError("--pieces splits a still: use it with --still")
        if args.frames is None:
            raise UsageError("--frames is required (or --still for one frame split across workers)")
        return args.frames
    if args.still and args.frames is not None:
        raise UsageError("give the still's frame once: --still FRAME, or --frames FRAME with --still")
    if args.still or args.frames is not None:
        return args.still or args.frames
    try:
        return str(stills.current_frame(scene))
    except stills.NoCurrentFrame as e:
        raise UsageError(f"{scene}: cannot read its current frame ({e}); give it, as in --still 12") from None


def _follow(api: FarmAPI, job_id: str, as_json: bool) -> Job:
    meter = Meter("frames", live=False if as_json else None)
    try:
        # An estimate waits for its owner once its samples are in: that is news to stop at too.
        return submission.follow(api, job_id, on_update=meter.job, until=(*submission.TERMINAL, "estimated"))
    finally:
        meter.close()


def _wait_and_fetch(api: FarmAPI, job: Job, output: Path | None, as_json: bool) -> int:
    job = _follow(api, job["id"], as_json)
    if job["status"] != "done":
        _print_job(job, as_json)
        print(f"job {job['id']} {job['status']}: {job.get('error') or ''}".rstrip(": "), file=sys.stderr)
        return 1
    output = output or Path(f"{_safe(job['name'])}-{job['id']}")
    frames = _fetch(api, job["id"], output)
    if as_json:
        # `folder`: the job's own `output` is how its frames are named (output_names.py)
        print(json.dumps({**job, "folder": str(output.resolve())}, indent=2))
    else:
        print(f"{len(frames)} frames in {output.resolve()}")
    return 0


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "job"


def _fetch(api: FarmAPI, job_id: str, output: Path) -> list[Path]:
    with tempfile.TemporaryDirectory(prefix="framefarm-dl-") as tmp:
        archive = api.download_archive(job_id, Path(tmp) / f"{job_id}.zip")
        return extract_frames(archive, output)


def _print_job(job: Job, as_json: bool) -> None:
    if as_json:
        print(json.dumps(job, indent=2))
        return
    f = job["frames"]
    print(f"{job['id']}  {job['status']:<10} {f['done']}/{f['total']} frames  {job['name']}")
    for key in ("error", "waiting_reason", "download_url", "movie_url"):
        if job.get(key):
            print(f"  {key.replace('_', ' ')}: {job[key]}")
    if output := job.get("output"):
        print(f"  frames named: {output['pattern']}")  # as the scene's output path names them
    if job["status"] == "estimated":
        print(estimate_text(job))


def _listing(items: Sequence[Mapping[str, Any]], as_json: bool, empty: str,
             line: Callable[[Mapping[str, Any]], str]) -> int:
    if as_json:
        print(json.dumps(items, indent=2))
    elif not items:
        print(empty)
    for item in [] if as_json else items:
        print(line(item))
    return 0


def _job_line(job: Mapping[str, Any]) -> str:
    created = time.strftime("%Y-%m-%d %H:%M", time.localtime(job["created_at"] / 1000))
    f = job["frames"]
    return f"{job['id']}  {created}  {job['status']:<10} {f['done']:>6}/{f['total']:<6} {job['name']}"


def jobs(args) -> int:
    return _listing(_api(args).jobs(), args.json, "no jobs", _job_line)


def status(args) -> int:
    api = _api(args)
    job = api.job(args.job)
    if args.wait:
        job = _follow(api, args.job, args.json)
    _print_job(job, args.json)
    return 0 if not args.wait or job["status"] in ("done", "estimated") else 1


def cancel(args) -> int:
    job = _api(args).cancel(args.job)
    _print_job(job, args.json)
    return 0


def job_action(args) -> int:
    """pause, resume, retry (the command's name is the API's action) and priority."""
    api = _api(args)
    if args.command == "priority":
        job = api.set_priority(args.job, args.priority)
    else:
        job = api.act(args.job, args.command)
    _print_job(job, args.json)
    return 0


def _worker_line(w: Mapping[str, Any]) -> str:
    doing = ", ".join(w["parts"]) or "-"
    return (f"{w['id']}  {w['state']:<9} Blender {w['blender_version']:<5} {w['device']:<4} "
            f"done {w['parts_done']:>5}  failed {w['parts_failed']:>4}  {doing}  {w['name']}")


def workers(args) -> int:
    return _listing(_api(args).workers(), args.json, "no worker is online", _worker_line)


def drain(args) -> int:
    w = _api(args).drain(args.worker, drained=args.command == "drain")
    print(json.dumps(w, indent=2) if args.json else f"{w['id']}  {w['state']}  {w['name']}")
    return 0


def webhooks(args) -> int:
    api = _api(args)
    if args.action == "key":
        print(api.webhook_key())
        return 0
    if args.action == "list":
        return _listing(api.webhooks(), args.json, "no farm-wide webhook", lambda w: f"{w['id']}  {w['format']:<7}  "
                        f"{w['url']}  (signed with {w['owner']}'s key)")
    if args.action not in ("add", "remove") or not args.target:
        raise UsageError("webhooks: key | list | add URL [--format F] | remove ID")
    if args.action == "add":
        w = api.add_webhook(args.target, args.format)
        print(json.dumps(w, indent=2) if args.json else f"added {w['id']}: {w['url']}")
    else:
        api.remove_webhook(args.target)
        print(f"removed {args.target}")
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
