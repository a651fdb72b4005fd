"""Main-thread handlers for what the background threads post, and the timer that runs them.

This is where farm news becomes Blender UI: the job list is updated, the panel
redrawn, and a finished or failed job is announced with a report and, when
Blender has a window, a popup with buttons for the download link.
"""
from __future__ import annotations

from typing import Any

import bpy

from . import gui, jobs_store, preferences, state, taskrunner, tasks, thumbs

TIMER_BUSY_S = 0.2
TIMER_IDLE_S = 1.0


def _redraw() -> None:
    wm = bpy.context.window_manager
    for window in wm.windows if wm else ():
        for area in window.screen.areas:
            if area.type == "PROPERTIES":
                area.tag_redraw()


def _announce(level: str, text: str, title: str = "Framefarm", job_id: str = "", lines: tuple[str, ...] = (),
              submit_anyway: bool = False) -> None:
    """A report everyone sees: the console and the add-on's message list always, and a
    popup in the UI (popups need a window, which background Blender lacks). Not the
    status bar: Blender only shows reports of operators the user ran, not of timers."""
    state.current.say(level, text)
    print(f"Framefarm {level.lower()}: {text}", flush=True)
    wm = bpy.context.window_manager
    if bpy.app.background or not wm or not wm.windows:
        return  # background Blender keeps a window list but crashes drawing a popup
    window = wm.windows[0]

    def draw(menu: Any, _context: bpy.types.Context) -> None:
        layout = menu.layout
        for line in (text, *lines):
            layout.label(text=line)
        if job_id and level == "INFO":
            layout.operator("framefarm.open_link", icon="URL").job_id = job_id
            layout.operator("framefarm.copy_link", icon="COPYDOWN").job_id = job_id
            layout.operator("framefarm.download", icon="IMPORT").job_id = job_id
        if submit_anyway:
            layout.operator("framefarm.submit", text="Submit Anyway", icon="ERROR").allow_missing = True

    with bpy.context.temp_override(window=window, screen=window.screen):
        wm.popup_menu(draw, title=title, icon="ERROR" if level == "ERROR" else "INFO")


@taskrunner.on("progress")
def _progress(text: str, fraction: float | None) -> None:
    cur = state.current
    cur.progress_text, cur.progress_fraction = text, fraction
    _redraw()  # nothing else redraws the panel while the upload runs


@taskrunner.on("submitted")
def _submitted(job: dict[str, Any], uploaded: list[str], files: int, uploaded_bytes: int, gateway: str,
               blend: str) -> None:
    cur = state.current
    cur.submitting, cur.progress_text, cur.progress_fraction = False, "", None
    cur.last_submission = {"job": job, "uploaded": uploaded, "files": files, "uploaded_bytes": uploaded_bytes,
                           "gateway": gateway}
    if cur.store is not None:
        cur.store.upsert(blend, jobs_store.record_from_job(job))
    kept = files - len(uploaded)
    cur.say("INFO", f"Submitted job {job['id']} ({job['frames']['total']} frames); uploaded {len(uploaded)} "
                    f"file(s), {kept} already on the farm")
    watch(job["id"])
    _redraw()


@taskrunner.on("submit_failed")
def _submit_failed(message: str, missing: list[str] | None = None) -> None:
    """`missing`: the files the scene references that do not exist (each with the data-block
    using it); the dialog lists them and offers to submit anyway, rendering without them."""
    cur = state.current
    cur.submitting, cur.progress_text, cur.progress_fraction = False, "", None
    cur.missing_files = list(missing or [])
    for ref in cur.missing_files:
        print(f"Framefarm: missing {ref}", flush=True)
    _announce("ERROR", f"Submission failed: {message}", title="Framefarm: submission failed",
              lines=tuple(cur.missing_files), submit_anyway=bool(cur.missing_files))
    _redraw()


@taskrunner.on("job")
def _job(job: dict[str, Any]) -> None:
    cur = state.current
    rec = cur.store.update_job(job) if cur.store else None
    if rec is not None:  # the strip: the previews of the frames done since
        thumbs.changed(rec)
    if rec is not None and rec["status"] == "estimated" and rec.get("estimate") and not rec.get("estimate_told"):
        cur.store.set_field(rec["id"], estimate_told=True)  # type: ignore[union-attr]
        _announce("INFO", f"Estimate of '{rec['name']}' is in: {' '.join(gui.estimate_lines(rec['estimate']))}",
                  title="Framefarm: estimate")
    if rec is not None and rec["status"] in ("done", "failed") and not rec.get("notified"):
        cur.store.set_field(rec["id"], notified=True)  # type: ignore[union-attr]
        if rec["status"] == "done":
            cur.notification = {"job_id": rec["id"], "status": "done", "frames": rec["total"],
                                "url": rec.get("download_url", ""), "name": rec["name"]}
            _announce("INFO", f"Job '{rec['name']}' is done: {rec['total']} frames ready to download",
                      title="Framefarm: frames ready", job_id=rec["id"])
        else:
            cur.notification = {"job_id": rec["id"], "status": "failed", "frames": rec["total"],
                                "error": rec["error"], "name": rec["name"]}
            _announce("ERROR", f"Job '{rec['name']}' failed: {rec['error']}", title="Framefarm: job failed")
    _redraw()


@taskrunner.on("previews")
def _previews(job_id: str, frames: list[int], rev: int | None, message: str = "") -> None:
    thumbs.landed(job_id, frames, rev)
    if message:
        state.current.say("ERROR", f"Could not fetch the previews of job {job_id}: {message}")
    _redraw()


@taskrunner.on("watch_failed")
def _watch_failed(job_id: str, message: str, gone: bool) -> None:
    if gone and state.current.store is not None:
        state.current.store.set_field(job_id, status="cancelled", error="the farm no longer knows this job")
    state.current.say("ERROR", f"Lost track of job {job_id}: {message}")
    _redraw()


@taskrunner.on("downloaded")
def _downloaded(job_id: str, directory: str, files: list[str], kept: list[str] | None = None) -> None:
    """`kept`: frames that were there already and were not overwritten."""
    cur = state.current
    cur.downloads[job_id] = files
    cur.progress_text, cur.progress_fraction = "", None
    extra = f"; kept {len(kept)} existing file(s)" if kept else ""
    _announce("INFO", f"Downloaded {len(files)} frames of job {job_id} into {directory}{extra}")
    _redraw()


@taskrunner.on("download_failed")
def _download_failed(job_id: str, message: str) -> None:
    state.current.progress_text = ""
    _announce("ERROR", f"Download of job {job_id} failed: {message}")


@taskrunner.on("connection")
def _connection(ok: bool, message: str) -> None:
    cur = state.current
    cur.connection, cur.connection_ok = message, ok
    cur.say("INFO" if ok else "ERROR", message)
    wm = bpy.context.window_manager
    for window in wm.windows if wm else ():
        for area in window.screen.areas:
            area.tag_redraw()


@taskrunner.on("error")
def _error(message: str) -> None:
    _announce("ERROR", message)


def watch(job_id: str) -> None:
    """Follow a job in the background (one long-poll thread per active job)."""
    farm = preferences.settings()
    if farm is not None and getattr(bpy.app, "online_access", True):
        taskrunner.start(f"watch-{job_id}", tasks.watch, farm, job_id, taskrunner.stop)


def watch_active() -> None:
    """Resume following the jobs still running, e.g. after Blender restarts."""
    store = state.current.store
    for job_id in store.active() if store else ():
        watch(job_id)


def timer() -> float:
    """Registered with bpy.app.timers: drains the queue, faster while work is on."""
    taskrunner.drain()
    return TIMER_IDLE_S if taskrunner.idle() else TIMER_BUSY_S
