"""`bpy.ops.framefarm.*`: submit (or estimate), cancel, pause, resume, download, flipbook, and the link buttons.

Every operator works from a button and from a script (`execute`). Slow work goes
to a background thread (see taskrunner); an operator only reads Blender's data and
starts it. `wait=True` makes a script's call block until the result is in.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import bpy

from . import preferences, props, state, taskrunner, tasks, thumbs
from ._vendor.framefarm.common.frameset import FrameSpecError

if TYPE_CHECKING:
    from bpy.stub_internal.rna_enums import OperatorReturnItems as Result
else:
    Result = str

WAIT_TIMEOUT_S = 600.0


def blend_key() -> str:
    """The job list's key for the open file ('' while it was never saved)."""
    return os.path.abspath(bpy.data.filepath) if bpy.data.filepath else ""


def submit_blocker(context: bpy.types.Context) -> str | None:
    """Why the scene cannot be submitted now, in words for the tooltip; None if it can."""
    scene = context.scene
    if scene is None:
        return "No scene to render"
    farm = preferences.settings(context)
    if farm is None:
        return "No farm gateway configured: set one in Preferences > Add-ons > Framefarm"
    if not farm.token:
        return "No access token: set one in Preferences > Add-ons > Framefarm"
    if not getattr(bpy.app, "online_access", True):
        return "Online access is disabled: allow it in Preferences > System > Network to use the farm"
    if state.current.submitting:
        return "A submission is in progress"
    # What is wrong with the scene itself: all of it at once, so the artist fixes it in one go.
    reasons = []
    if scene.camera is None:
        reasons.append("The scene has no active camera")
    if props.is_still(scene):
        reasons += props.still_blockers(scene)
    else:
        try:
            props.frame_range(scene)
        except FrameSpecError as exc:
            reasons.append(f"The frames cannot be rendered: {exc}")
    return "; ".join(reasons) or None


def save_copy() -> Path:
    """Save the current state as a copy in a private folder. `copy=True` leaves the
    open file's path and dirty flag alone; relative paths are remapped so that
    they still resolve from the copy's folder."""
    folder = Path(tempfile.mkdtemp(prefix="framefarm-submit-"))
    name = bpy.path.basename(bpy.data.filepath) or "untitled.blend"
    copy = folder / name
    bpy.ops.wm.save_as_mainfile(filepath=str(copy), copy=True, relative_remap=True, check_existing=False)
    return copy


class FRAMEFARM_OT_submit(bpy.types.Operator):
    """Render this scene on the farm: a copy is packed and uploaded in the background"""

    bl_idname = "framefarm.submit"
    bl_label = "Render on Farm"
    bl_options = {"REGISTER"}

    wait: bpy.props.BoolProperty(  # type: ignore[valid-type]
        name="Wait", default=False, options={"SKIP_SAVE"},
        description="Block until the job is created (for scripts; the UI never waits)")
    allow_missing: bpy.props.BoolProperty(  # type: ignore[valid-type]
        name="Submit Anyway", default=False, options={"SKIP_SAVE"},
        description="Submit even if files the scene references are missing; the farm renders without them, "
                    "as Blender does")
    estimate: bpy.props.BoolProperty(  # type: ignore[valid-type]
        name="Estimate", default=False, options={"SKIP_SAVE"},
        description="Render only a few sample frames (first, middle, last), then say the time per frame, the "
                    "projected time and cost of the rest; \"Render All\" renders the rest, reusing the samples")

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        reason = submit_blocker(context)
        if reason and hasattr(cls, "poll_message_set"):
            cls.poll_message_set(reason)
        return reason is None

    def execute(self, context: bpy.types.Context) -> set[Result]:
        reason = submit_blocker(context)
        farm = preferences.settings(context)
        if reason or farm is None:
            self.report({"ERROR"}, reason or "No farm configured")
            return {"CANCELLED"}
        scene = context.scene
        if scene is None:
            return {"CANCELLED"}
        ff = props.settings(scene)
        request = {"priority": ff.priority, "name": props.job_name(scene), "blend": blend_key(),
                   "allow_missing": self.allow_missing, "format": props.output_format(scene)}
        # A video scene's movie is made by the farm (framefarm.client.movies); these say what else comes back.
        request.update(movie=ff.movie, keep_frames=ff.keep_frames)
        request["estimate"] = self.estimate and not props.is_still(scene)
        if props.is_still(scene):  # the current frame, split into pieces
            request.update(frames=str(scene.frame_current), step=1, chunk=None, still=True, pieces=ff.pieces or None)
            what = f"frame {scene.frame_current} as a still"
        else:
            frames = props.frame_range(scene)
            request.update(frames=frames.text(), step=frames.step, chunk=ff.chunk or None)
            what = f"{frames.count} frames"
        try:
            copy = save_copy()
        except (RuntimeError, OSError) as exc:
            self.report({"ERROR"}, f"Could not save a copy of the scene to submit: {exc}")
            return {"CANCELLED"}
        cur = state.current
        cur.submitting, cur.progress_text, cur.progress_fraction = True, "Packing the scene", None
        cur.missing_files = []
        taskrunner.start("submit", tasks.submit, farm, copy, request)
        how = "estimating" if request["estimate"] else "submitting"
        self.report({"INFO"}, f"Framefarm: {how} {request['name']} ({what}) in the background")
        if self.wait:
            taskrunner.drain_until(lambda: not cur.submitting, WAIT_TIMEOUT_S)
            job = cur.last_submission.get("job")
            if cur.submitting or not job:
                self.report({"ERROR"}, f"Framefarm: {cur.messages[-1][1] if cur.messages else 'no answer'}")
                return {"CANCELLED"}
        return {"FINISHED"}


class _JobOperator(bpy.types.Operator):
    """Base of the operators on one job of the file's list (never registered itself;
    Blender collects the `job_id` property from the base class)."""

    bl_options = {"INTERNAL"}

    job_id: bpy.props.StringProperty(name="Job", options={"SKIP_SAVE"})  # type: ignore[valid-type]

    def record(self) -> dict | None:
        store = state.current.store
        found = store.find(self.job_id) if store else None
        if found is None:
            self.report({"ERROR"}, f"Framefarm: job {self.job_id!r} is not in this file's job list")
            return None
        return found[1]

    def link(self) -> str | None:
        """The job's signed download link (refreshed each time the job is polled)."""
        rec = self.record()
        url = rec.get("download_url") if rec else None
        if rec is not None and not url:
            self.report({"ERROR"}, f"Framefarm: job {self.job_id} has no download link (it is {rec.get('status')})")
        return url

    def farm(self) -> tasks.FarmSettings | None:
        farm = preferences.settings()
        if farm is None:
            self.report({"ERROR"}, "No farm gateway configured")
        return farm


class FRAMEFARM_OT_cancel(_JobOperator):
    """Cancel this job on the farm"""

    bl_idname = "framefarm.cancel"
    bl_label = "Cancel Job"

    def execute(self, context: bpy.types.Context) -> set[Result]:
        farm = self.farm()
        if farm is None or self.record() is None:
            return {"CANCELLED"}
        taskrunner.start(f"cancel-{self.job_id}", tasks.cancel, farm, self.job_id)
        return {"FINISHED"}


class _JobAction(_JobOperator):
    """Base of the operators that ask the farm for one of a job's actions (never registered)."""

    action = ""

    def execute(self, context: bpy.types.Context) -> set[Result]:
        farm = self.farm()
        if farm is None or self.record() is None:
            return {"CANCELLED"}
        taskrunner.start(f"{self.action}-{self.job_id}", tasks.act, farm, self.job_id, self.action)
        return {"FINISHED"}


class FRAMEFARM_OT_pause(_JobAction):
    """Pause this job: the farm hands out no more of its parts (parts rendering finish)"""

    bl_idname = "framefarm.pause"
    bl_label = "Pause Job"
    action = "pause"


class FRAMEFARM_OT_resume(_JobAction):
    """Resume this paused job"""

    bl_idname = "framefarm.resume"
    bl_label = "Resume Job"
    action = "resume"


class FRAMEFARM_OT_download(_JobOperator):
    """Download the finished job's frames to where a local render writes them (the scene's output path)"""

    bl_idname = "framefarm.download"
    bl_label = "Download Frames"

    directory: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="Folder", subtype="DIR_PATH", options={"SKIP_SAVE"},
        description="Put the frames in this folder as the zip names them; empty: each frame where F12 / "
                    "Ctrl-F12 writes it (the scene's output path)")
    overwrite: bpy.props.BoolProperty(  # type: ignore[valid-type]
        name="Overwrite", default=False, options={"SKIP_SAVE"},
        description="Replace frames that exist already at the scene's output path (else they are kept and "
                    "nothing is downloaded)")
    wait: bpy.props.BoolProperty(name="Wait", default=False, options={"SKIP_SAVE"})  # type: ignore[valid-type]

    def targets(self, scene: bpy.types.Scene, rec: dict) -> dict[int, str]:
        """Frame -> the file a local render of that frame writes."""
        start, _, end = str(rec.get("frames", "")).partition("-")
        frames = range(int(start), int(end or start) + 1, max(1, int(rec.get("step") or 1)))
        return {f: scene.render.frame_path(frame=f) for f in frames}

    def existing(self, context: bpy.types.Context, rec: dict) -> list[str]:
        scene = context.scene
        return [p for p in self.targets(scene, rec).values() if os.path.exists(p)] if scene and not self.directory else []

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[Result]:
        """From the panel: asks before replacing frames that are there already."""
        rec = self.record()
        if rec is not None and rec.get("status") == "done" and self.existing(context, rec) and context.window_manager:
            self.overwrite = True  # what the artist confirms in the popup
            return context.window_manager.invoke_confirm(self, event)
        return self.execute(context)

    def execute(self, context: bpy.types.Context) -> set[Result]:
        farm, rec = self.farm(), self.record()
        if farm is None or rec is None:
            return {"CANCELLED"}
        if rec.get("status") != "done":
            self.report({"ERROR"}, f"Framefarm: job {self.job_id} is {rec.get('status')}, not done")
            return {"CANCELLED"}
        scene = context.scene
        name = f"download-{self.job_id}"
        if self.directory:
            taskrunner.start(name, tasks.download, farm, self.job_id, Path(bpy.path.abspath(self.directory)))
        elif scene is not None:
            there = self.existing(context, rec)
            if there and not self.overwrite:
                self.report({"ERROR"}, f"Framefarm: {len(there)} frame(s) exist already, e.g. {there[0]}; "
                                       "download with Overwrite on to replace them")
                return {"CANCELLED"}
            taskrunner.start(name, tasks.download_frames, farm, self.job_id, self.targets(scene, rec),
                             rec.get("output"), self.overwrite)
        else:
            self.report({"ERROR"}, "Framefarm: no folder given and no scene to take the output path from")
            return {"CANCELLED"}
        if self.wait:
            cur = state.current
            cur.downloads.pop(self.job_id, None)
            taskrunner.drain_until(lambda: not taskrunner.running(name), WAIT_TIMEOUT_S)
            taskrunner.drain()
            if self.job_id not in cur.downloads:
                self.report({"ERROR"}, f"Framefarm: {cur.messages[-1][1] if cur.messages else 'download failed'}")
                return {"CANCELLED"}
        return {"FINISHED"}


class FRAMEFARM_OT_flipbook(_JobOperator):
    """Play the job's finished frames in order at the scene's frame rate, from the farm's small previews"""

    bl_idname = "framefarm.flipbook"
    bl_label = "Flipbook"

    wait: bpy.props.BoolProperty(name="Wait", default=False, options={"SKIP_SAVE"})  # type: ignore[valid-type]

    def execute(self, context: bpy.types.Context) -> set[Result]:
        rec, scene = self.record(), context.scene
        if rec is None or scene is None:
            return {"CANCELLED"}
        thumbs.fetch(self.job_id, rec.get("rev", 0))  # any the strip missed (e.g. Blender was closed meanwhile)
        if self.wait:  # a script: every preview the farm has now, first
            name = f"previews-{self.job_id}"
            taskrunner.drain_until(lambda: not taskrunner.running(name), WAIT_TIMEOUT_S)
            taskrunner.drain()
        image = thumbs.flipbook(self.job_id, scene, open_window=not bpy.app.background)
        if image is None:
            self.report({"ERROR"}, f"Framefarm: no previews of job {self.job_id} yet")
            return {"CANCELLED"}
        if not bpy.app.background and not state.current.flipbook.get("window"):
            self.report({"WARNING"}, f"Framefarm: the flipbook is the image '{image.name}': a new window cannot "
                                     "open from here (a maximized area?); show it in an Image Editor")
        return {"FINISHED"}


class FRAMEFARM_OT_open_link(_JobOperator):
    """Open the download link in the web browser"""

    bl_idname = "framefarm.open_link"
    bl_label = "Open Download Link"

    def execute(self, context: bpy.types.Context) -> set[Result]:
        url = self.link()
        if url:
            bpy.ops.wm.url_open(url=url)
        return {"FINISHED"} if url else {"CANCELLED"}


class FRAMEFARM_OT_copy_link(_JobOperator):
    """Copy the download link to the clipboard"""

    bl_idname = "framefarm.copy_link"
    bl_label = "Copy Download Link"

    def execute(self, context: bpy.types.Context) -> set[Result]:
        url = self.link()
        if not url or context.window_manager is None:
            return {"CANCELLED"}
        context.window_manager.clipboard = url
        self.report({"INFO"}, "Download link copied")
        return {"FINISHED"}


class FRAMEFARM_OT_forget(_JobOperator):
    """Remove this job from the file's job list (it stays on the farm)"""

    bl_idname = "framefarm.forget"
    bl_label = "Remove from List"

    def execute(self, context: bpy.types.Context) -> set[Result]:
        if state.current.store is not None:
            state.current.store.remove(self.job_id)
        thumbs.forget(self.job_id)
        return {"FINISHED"}


class FRAMEFARM_OT_test_connection(bpy.types.Operator):
    """Reach the configured gateways and check the token"""

    bl_idname = "framefarm.test_connection"
    bl_label = "Test Connection"

    wait: bpy.props.BoolProperty(name="Wait", default=False, options={"SKIP_SAVE"})  # type: ignore[valid-type]

    def execute(self, context: bpy.types.Context) -> set[Result]:
        cur = state.current
        farm = preferences.settings(context)
        if farm is None:
            cur.connection, cur.connection_ok = "No gateway configured", False
            return {"CANCELLED"}
        if not getattr(bpy.app, "online_access", True):
            cur.connection, cur.connection_ok = "Online access is disabled in Preferences > System", False
            return {"CANCELLED"}
        cur.connection, cur.connection_ok = "Testing...", None
        taskrunner.start("test-connection", tasks.test_connection, farm)
        if self.wait:
            taskrunner.drain_until(lambda: cur.connection_ok is not None, 60)
            self.report({"INFO" if cur.connection_ok else "ERROR"}, cur.connection)
        return {"FINISHED"}


CLASSES = (FRAMEFARM_OT_submit, FRAMEFARM_OT_cancel, FRAMEFARM_OT_pause, FRAMEFARM_OT_resume, FRAMEFARM_OT_download,
           FRAMEFARM_OT_flipbook, FRAMEFARM_OT_open_link, FRAMEFARM_OT_copy_link, FRAMEFARM_OT_forget, FRAMEFARM_OT_test_connection)
