"""The job list's thumbnail strip and the flipbook: the farm's small previews of finished frames.

The previews are fetched on a background thread (tasks.fetch_previews) into a cache folder per
job, in the add-on's user folder; here, on the main thread, they become icons through
`bpy.utils.previews` (the strip) or an image sequence in a new Image Editor window played at
the scene's frame rate (the flipbook). Neither downloads the full frames.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import bpy
import bpy.utils.previews

from . import preferences, state, taskrunner, tasks

STRIP = 8  # the latest frames shown per job
_icons: Any = None  # the ImagePreviewCollection, made on register
_wanted: dict[str, int] = {}  # job id -> the newest revision a fetch was asked for while one ran
_seen: dict[str, tuple[int, str]] = {}  # job id -> (frames done, status) its previews were last fetched at


def register() -> None:
    global _icons
    _icons = bpy.utils.previews.new()


def unregister() -> None:
    global _icons
    if _icons is not None:
        bpy.utils.previews.remove(_icons)
    _icons = None
    _wanted.clear()
    _seen.clear()


def folder(job_id: str) -> Path | None:
    cache = state.current.cache
    return cache / job_id if cache is not None else None


def frames(job_id: str) -> list[int]:
    """The frames whose preview is cached, ascending (read from the folder once, e.g. after a restart)."""
    cur = state.current
    if job_id not in cur.thumbs:
        where = folder(job_id)
        found = sorted(int(p.stem) for p in where.glob("*.jpg") if p.stem.isdigit()) if where and where.is_dir() else []
        cur.thumbs[job_id] = found
    return cur.thumbs[job_id]


def icon(job_id: str, frame: int) -> int:
    """The icon of a cached preview (loaded on first use; 0 where there is none)."""
    where = folder(job_id)
    if _icons is None or where is None:
        return 0
    key = f"{job_id}:{frame}"
    if key not in _icons:
        path = where / tasks.preview_name(frame)
        if not path.exists():
            return 0
        preview = _icons.load(key, str(path), "IMAGE")
        # Read both sizes now, on the main thread: a preview left to load lazily is read by a
        # preview job on another thread while the panel draws it, and Blender 3.4 crashed
        # (segfault) in that race under load. Reading a size loads it synchronously (a small JPEG).
        preview.icon_size[:], preview.image_size[:]
    return int(_icons[key].icon_id)


def strip(job_id: str) -> list[tuple[int, int]]:
    """(frame, icon) of the job's latest cached previews, for the panel."""
    return [(f, icon(job_id, f)) for f in frames(job_id)[-STRIP:]]


def changed(rec: dict) -> None:
    """A job's record changed: fetch its new previews when it has more frames done, or a new status
    (once assembled, its previews are read from the job's own previews file)."""
    seen = (rec["done"], rec["status"])
    if rec["done"] > 0 and _seen.get(rec["id"]) != seen:
        _seen[rec["id"]] = seen
        fetch(rec["id"], rec["rev"])


def fetch(job_id: str, rev: int) -> None:
    """Fetch the job's new previews in the background; one fetch per job at a time, and one more
    after it when the job changed while it ran (so the last frames are never missed)."""
    farm, where = preferences.settings(), folder(job_id)
    if farm is None or where is None or not getattr(bpy.app, "online_access", True):
        return
    if not taskrunner.start(f"previews-{job_id}", tasks.fetch_previews, farm, job_id, where, rev):
        _wanted[job_id] = max(rev, _wanted.get(job_id, rev))


def landed(job_id: str, frames_in: list[int], rev: int | None) -> None:
    """Previews landed in the cache (`rev` None: a few of a fetch still running; else the fetch
    for that revision ended), from notify's handler."""
    state.current.thumbs[job_id] = sorted(set(frames(job_id)) | set(frames_in))
    if rev is not None and _wanted.get(job_id, -1) > rev:
        fetch(job_id, _wanted.pop(job_id))


def forget(job_id: str) -> None:
    """Drop a job's cached previews (it left the job list)."""
    where = folder(job_id)
    if where is not None:
        shutil.rmtree(where, ignore_errors=True)
    state.current.thumbs.pop(job_id, None)
    if _icons is not None:
        for key in [k for k in _icons.keys() if k.startswith(f"{job_id}:")]:
            _icons.pop(key)


def flipbook(job_id: str, scene: bpy.types.Scene, open_window: bool) -> bpy.types.Image | None:
    """The job's cached previews as one image sequence, in frame order, numbered 1..N (only the
    finished frames: a job rendered in preview order has gaps); shown in a new Image Editor window
    and played at the scene's frame rate where Blender has a window."""
    shown = frames(job_id)
    where = folder(job_id)
    if not shown or where is None:
        return None
    seq = where / "flipbook"
    shutil.rmtree(seq, ignore_errors=True)
    seq.mkdir(parents=True)
    for i, frame in enumerate(shown, 1):  # links, not copies: the cache holds the bytes once
        src, dst = where / tasks.preview_name(frame), seq / f"{i:06d}.jpg"
        try:
            dst.hardlink_to(src)
        except OSError:
            shutil.copyfile(src, dst)
    name = f"Framefarm {job_id}"
    old = bpy.data.images.get(name)
    if old is not None:
        bpy.data.images.remove(old)
    image = bpy.data.images.load(str(seq / f"{1:06d}.jpg"), check_existing=False)
    image.name, image.source = name, "SEQUENCE"
    fps = scene.render.fps / scene.render.fps_base
    state.current.flipbook = {"job_id": job_id, "image": image.name, "frames": list(shown), "fps": fps,
                              "files": [str(p) for p in sorted(seq.iterdir())], "window": False}
    if open_window:
        state.current.flipbook["window"] = _show(image, scene, len(shown))
    return image


def _show(image: bpy.types.Image, scene: bpy.types.Scene, count: int) -> bool:
    """A new window with an Image Editor playing the sequence from the scene's first frame, looping,
    at the scene's rate (the scene's playback drives an image sequence)."""
    wm = bpy.context.window_manager
    if wm is None:
        return False
    before = set(wm.windows[:])
    try:
        bpy.ops.wm.window_new()
    except RuntimeError:  # its poll failed: e.g. from a maximized area (Ctrl Space)
        return False
    new = [w for w in wm.windows if w not in before]
    if not new or new[0].screen is None:
        return False
    window, screen = new[0], new[0].screen
    area = max(screen.areas, key=lambda a: a.width * a.height)
    area.type = "IMAGE_EDITOR"
    space = area.spaces.active
    if not isinstance(space, bpy.types.SpaceImageEditor):
        return False
    space.image = image
    user = space.image_user
    user.frame_start, user.frame_duration, user.frame_offset = scene.frame_start, count, 0
    user.use_cyclic, user.use_auto_refresh = True, True
    with bpy.context.temp_override(window=window, area=area, screen=screen):
        if not screen.is_animation_playing:
            bpy.ops.screen.animation_play()
    return True
