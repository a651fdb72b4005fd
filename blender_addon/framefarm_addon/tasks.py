"""The add-on's network and packing work, run on background threads.

Nothing here imports `bpy`: these functions run off Blender's main thread and
only ever report through `post(kind, **payload)`, which puts a message on the
queue that `taskrunner.drain()` empties on the main thread. The farm is reached with
the same client code the `framefarm` CLI uses (bundled under `_vendor`).
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
import threading
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ._vendor.framefarm.common.api import FarmAPI, extract_frames
from ._vendor.framefarm.common.http import Client, FarmError, FarmUnavailable
from ._vendor.framefarm.common.output_names import entry_name
from ._vendor.framefarm.client.packing import PackError
from ._vendor.framefarm.client.submission import TERMINAL, MissingFiles, submit_scene

Post = Callable[..., None]
WATCH_WAIT_S = 10.0  # one long-poll per job at a time; short enough to stop promptly
RETRY_FOR_S = 30.0
PREVIEWS_AT_ONCE = 4  # previews per message: the strip fills a few at a time as they land
_PLAIN_ENTRY = re.compile(r"(\d+)\.[A-Za-z0-9]+")  # a job without an output pattern: 0001.png


@dataclass(frozen=True)
class FarmSettings:
    """What the threads need from the preferences, copied on the main thread."""

    gateways: tuple[str, ...]
    token: str

    def api(self, retry_for: float = RETRY_FOR_S) -> "RecordingAPI":
        return RecordingAPI(Client(self.gateways, self.token, retry_for=retry_for))


class RecordingAPI(FarmAPI):
    """FarmAPI that remembers which files it uploaded, so the add-on can say so
    (and a resubmission can show that unchanged assets were not sent again)."""

    def __init__(self, client: Client) -> None:
        super().__init__(client)
        self.uploaded: list[str] = []

    def upload(self, sha: str, path: Path, progress: Callable[[int], None] | None = None) -> None:
        super().upload(sha, path, progress)
        self.uploaded.append(path.name)


def describe(exc: BaseException) -> str:
    """An artist-readable sentence for anything a farm call can raise."""
    if isinstance(exc, FarmUnavailable):
        return f"Cannot reach the farm: {exc.message}"
    if isinstance(exc, FarmError):
        if exc.status == 401:
            return (f"The farm refused the access token ({exc.message}); check the token in "
                    "Preferences > Add-ons > Framefarm")
        if exc.status == 403:
            return (f"This token may not do that ({exc.message}); an artist needs a client token: "
                    "framefarm token create --role client")
        if exc.status == 404 and exc.code in (None, "not_found") and "job" not in exc.message:
            return f"This gateway does not speak the Framefarm API v1 ({exc.message}); check the URL"
        return exc.message
    if isinstance(exc, PackError):
        return f"Could not pack the scene: {exc}"
    if isinstance(exc, OSError):
        return f"{exc.strerror or exc} ({exc.filename})" if exc.filename else str(exc)
    return f"{type(exc).__name__}: {exc}"


def as_in_file(ref: str, copy: Path, blend: str) -> str:
    """A missing file's reference as the artist's open file writes it. The copy that was packed
    lies in a temporary folder, with relative paths remapped to it ('//../../home/...'); shown
    from the open file's folder they read as in Blender's UI ('//textures/wood.png')."""
    if not ref.startswith("//") or " (used by " not in ref or not blend:
        return ref
    path, rest = ref[2:].split(" (used by ", 1)
    if not rest.endswith(f" in {copy.name})"):  # a library's own paths were not remapped
        return ref
    where = os.path.normpath(copy.parent / path)
    return f"//{Path(os.path.relpath(where, os.path.dirname(blend))).as_posix()} (used by {rest}"


def submit(post: Post, settings: FarmSettings, copy: Path, request: dict[str, Any]) -> None:
    """Pack the saved copy, upload what the farm lacks, create the job.
    The copy's folder is ours (a temporary one) and is removed afterwards."""
    def on_status(text: str) -> None:
        post("progress", text=text, fraction=None)

    def on_upload(sent: int, of: int) -> None:
        post("progress", text=f"Uploading {sent / 1e6:.1f} of {of / 1e6:.1f} MB", fraction=sent / of if of else 1.0)

    try:
        api = settings.api()
        job, stats = submit_scene(api, copy, frames=request["frames"], step=request["step"],
                                  chunk=request.get("chunk"), priority=request["priority"], name=request["name"],
                                  allow_missing=request.get("allow_missing", False),
                                  movie=request.get("movie", False), keep_frames=request.get("keep_frames", False),
                                  output_format=request.get("format"), still=request.get("still", False),
                                  pieces=request.get("pieces"), estimate=request.get("estimate", False),
                                  on_status=on_status, on_upload=on_upload, idempotency_key=str(uuid.uuid4()))
    except MissingFiles as exc:  # the artist decides: fix them, or "Submit Anyway"
        post("submit_failed", message=f"The scene references {len(exc.files)} file(s) that do not exist",
             missing=[as_in_file(ref, copy, request.get("blend", "")) for ref in exc.files])
        return
    except Exception as exc:  # every failure becomes a message, never a traceback in the UI
        post("submit_failed", message=describe(exc))
        return
    finally:
        shutil.rmtree(copy.parent, ignore_errors=True)
    post("submitted", job=job, uploaded=list(api.uploaded), files=stats.files,
         uploaded_bytes=stats.uploaded_bytes, gateway=api.client._preferred,
         blend=request["blend"])


def watch(post: Post, settings: FarmSettings, job_id: str, stop: threading.Event) -> None:
    """Follow one job with long-polls (the gateway answers as soon as it changes)
    until it ends or the add-on stops; each new state is posted."""
    try:
        api = settings.api(retry_for=60.0)
    except Exception as exc:
        post("watch_failed", job_id=job_id, message=describe(exc), gone=False)
        return
    rev: int | None = None
    while not stop.is_set():
        try:
            job = api.job(job_id, wait=WATCH_WAIT_S if rev is not None else None, rev=rev)
        except FarmUnavailable:
            if stop.wait(5.0):
                return
            continue
        except Exception as exc:
            post("watch_failed", job_id=job_id, message=describe(exc), gone=getattr(exc, "status", None) == 404)
            return
        if job["rev"] != rev:
            post("job", job=job)
        rev = job["rev"]
        if job["status"] in TERMINAL:
            return


def cancel(post: Post, settings: FarmSettings, job_id: str) -> None:
    try:
        post("job", job=settings.api().cancel(job_id))
    except Exception as exc:
        post("error", message=f"Could not cancel job {job_id}: {describe(exc)}")


def act(post: Post, settings: FarmSettings, job_id: str, action: str) -> None:
    """A job's action on the farm: "pause" or "resume"."""
    try:
        post("job", job=settings.api().act(job_id, action))
    except Exception as exc:
        post("error", message=f"Could not {action} job {job_id}: {describe(exc)}")


def download(post: Post, settings: FarmSettings, job_id: str, directory: Path) -> None:
    """Fetch the job's zip and unpack its frames into `directory`."""
    archive = directory / f".framefarm-{job_id}.zip"

    def progress(n: int) -> None:
        got["bytes"] += n
        post("progress", text=f"Downloading {got['bytes'] / 1e6:.1f} MB", fraction=None)

    got = {"bytes": 0}
    try:
        settings.api().download_archive(job_id, archive, progress)
        files = extract_frames(archive, directory)
    except Exception as exc:
        post("download_failed", job_id=job_id, message=describe(exc))
        return
    finally:
        archive.unlink(missing_ok=True)
    post("downloaded", job_id=job_id, directory=str(directory), files=[str(f) for f in files])


def preview_name(frame: int) -> str:
    """A cached preview's file name: by frame number, so the folder lists in frame order."""
    return f"{frame:07d}.jpg"


def fetch_previews(post: Post, settings: FarmSettings, job_id: str, folder: Path, rev: int) -> None:
    """Fetch the job's small previews that `folder` (its cache) lacks, posting each few as they
    land; never the full frames. `rev`: the job's revision this fetch was started for."""
    got: list[int] = []
    message = ""
    try:
        api = settings.api(retry_for=10.0)
        for frame in api.previews(job_id)["frames"]:
            path = folder / preview_name(frame)
            if path.exists():
                continue
            data = api.preview(job_id, frame)
            if data is None:  # gone since the list (the job was assembled): the next fetch finds it
                continue
            folder.mkdir(parents=True, exist_ok=True)
            part = path.with_suffix(".part")
            part.write_bytes(data)
            os.replace(part, path)  # whole or not at all: the panel never loads half a JPEG
            got.append(frame)
            if len(got) >= PREVIEWS_AT_ONCE:
                post("previews", job_id=job_id, frames=got, rev=None)
                got = []
    except Exception as exc:
        message = describe(exc)
    post("previews", job_id=job_id, frames=got, rev=rev, message=message)


def frame_entries(names: list[str], pattern: str | None, frames: list[int]) -> dict[int, str]:
    """Each frame's entry in the job's zip: named by the job's output pattern (output_names.py),
    or `0001.png` where the job has none (older jobs, stills)."""
    present = set(names)
    if pattern:
        found = {f: entry_name(pattern, f) for f in frames}
        return {f: name for f, name in found.items() if name in present}
    plain = {int(m[1]): n for n in names if (m := _PLAIN_ENTRY.fullmatch(n))}
    return {f: plain[f] for f in frames if f in plain}


def download_frames(post: Post, settings: FarmSettings, job_id: str, targets: dict[int, str], pattern: str | None,
                    overwrite: bool) -> None:
    """Fetch the job's zip and write frame N to `targets[N]` (where a local render writes it,
    scene.render.frame_path), creating folders; an existing file is kept unless `overwrite`."""
    got = {"bytes": 0}

    def progress(n: int) -> None:
        got["bytes"] += n
        post("progress", text=f"Downloading {got['bytes'] / 1e6:.1f} MB", fraction=None)

    written: list[str] = []
    kept: list[str] = []
    with tempfile.TemporaryDirectory(prefix="framefarm-download-") as tmp:
        archive = Path(tmp) / "job.zip"
        try:
            settings.api().download_archive(job_id, archive, progress)
            with zipfile.ZipFile(archive) as zf:
                entries = frame_entries(zf.namelist(), pattern, sorted(targets))
                for frame, name in sorted(entries.items()):
                    target = Path(targets[frame])
                    if target.suffix.lower() != Path(name).suffix.lower() and target.suffix:
                        target = target.with_suffix(Path(name).suffix)  # the job's format override
                    if target.exists() and not overwrite:
                        kept.append(str(target))
                        continue
                    target.parent.mkdir(parents=True, exist_ok=True)
                    part = target.with_name(target.name + ".part")
                    with zf.open(name) as src, open(part, "wb") as out:
                        shutil.copyfileobj(src, out, 1024 * 1024)
                    os.replace(part, target)
                    written.append(str(target))
        except Exception as exc:
            post("download_failed", job_id=job_id, message=describe(exc))
            return
    if not written and not kept:
        post("download_failed", job_id=job_id, message="the job's zip holds none of its frames")
        return
    folders = sorted({str(Path(f).parent) for f in written + kept})
    post("downloaded", job_id=job_id, directory=", ".join(folders), files=written, kept=kept)


def test_connection(post: Post, settings: FarmSettings) -> None:
    """Reach a gateway and try the token, then say plainly what is wrong, if anything."""
    try:
        api = settings.api(retry_for=3.0)
        jobs = api.jobs()
    except Exception as exc:
        post("connection", ok=False, message=describe(exc))
        return
    post("connection", ok=True, message=f"Connected to {api.client._preferred}: the token works "
                                         f"({len(jobs)} job(s) on the farm, {len(api.client.gateways)} gateway(s))")
