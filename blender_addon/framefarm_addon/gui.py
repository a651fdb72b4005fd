"""The Framefarm panel in Properties > Output, next to Blender's own frame range."""
from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING

import bpy

from . import operators, props, state, thumbs
from ._vendor.framefarm.client.submission import TERMINAL

if TYPE_CHECKING:
    from bpy.stub_internal.rna_enums import IconItems as Icon
else:
    Icon = str

STATUS_ICONS: dict[str, Icon] = {"queued": "TIME", "running": "RENDER_ANIMATION", "assembling": "PACKAGE",
                                 "done": "CHECKMARK", "failed": "ERROR", "cancelled": "CANCEL",
                                 "expired": "GHOST_DISABLED", "estimated": "TIME"}
THUMB_SCALE = 4.0  # a strip thumbnail, in icon widths
STRIP_COLUMNS = 4


def progress(layout: bpy.types.UILayout, fraction: float, text: str) -> None:
    """A progress bar where Blender has one (4.0+), text elsewhere."""
    if hasattr(layout, "progress"):
        layout.progress(factor=fraction, type="BAR", text=text)
    else:
        layout.label(text=f"{text} ({fraction:.0%})")


def wrapped_label(layout: bpy.types.UILayout, context: bpy.types.Context, text: str, icon: Icon) -> None:
    """A long message in lines that fit the editor: Blender cuts a label short with
    '...' in the middle, which loses just the words that say what to do."""
    prefs = context.preferences
    scale = (prefs.system.ui_scale if prefs else 0.0) or 1.0  # 0 where there is no window
    width = context.region.width if context.region else 300
    col = layout.column(align=True)
    for i, line in enumerate(textwrap.wrap(text, max(16, int((width - 50 * scale) / (6.5 * scale))))):
        col.label(text=line, icon=icon if i == 0 else "BLANK1")


def duration(seconds: float) -> str:
    """'2 h 05 min', '4 min 10 s', '12.5 s'."""
    if seconds >= 3600:
        return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"
    if seconds >= 60:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"{seconds:.1f} s"


def estimate_lines(est: dict) -> list[str]:
    """An estimate's numbers (the job view's `estimate`), as the panel says them."""
    spf = est["seconds_per_frame"]
    lines = [f"{len(est['samples'])} sample frame(s): {spf['min']:.1f}-{spf['max']:.1f} s per frame "
             f"(mean {spf['mean']:.1f} s)"]
    if est.get("projected_seconds") is None:
        lines.append("The rest: no worker can take it now")
    else:
        lines.append(f"The rest: about {duration(est['projected_seconds'])} on {est['workers']} worker(s)")
    if est.get("cost") is not None:
        lines.append(f"Cost: {est['cost']:.2f} {est.get('currency') or ''} "
                     f"(at {est['price_per_worker_hour']:g} per worker-hour)".replace("  ", " "))
    return lines


class FRAMEFARM_PT_output(bpy.types.Panel):
    bl_label = "Framefarm"
    bl_space_type = "PROPERTIES"
    bl_region_type = "WINDOW"
    bl_context = "output"
    bl_options = {"DEFAULT_CLOSED"}

    @staticmethod
    def draw_range(layout: bpy.types.UILayout, scene: bpy.types.Scene, ff: props.FramefarmSceneSettings) -> None:
        """An animation's frames and parts."""
        layout.prop(ff, "use_scene_range")
        col = layout.column(align=True)
        if ff.use_scene_range:
            col.enabled = False
            col.prop(scene, "frame_start", text="Frame Start")
            col.prop(scene, "frame_end", text="End")
            col.prop(scene, "frame_step", text="Step")
        else:
            col.prop(ff, "frame_start", text="Frame Start")
            col.prop(ff, "frame_end", text="End")
            col.prop(ff, "frame_step", text="Step")
        layout.prop(ff, "chunk")

    def draw(self, context: bpy.types.Context) -> None:
        layout, scene = self.layout, context.scene
        if layout is None or scene is None:
            return
        layout.use_property_split = True
        layout.use_property_decorate = False
        ff = props.settings(scene)
        layout.row().prop(ff, "mode", expand=True)
        if props.is_still(scene):
            layout.prop(scene, "frame_current", text="Frame")
            layout.prop(ff, "pieces")
        else:
            self.draw_range(layout, scene, ff)
        layout.prop(ff, "priority")
        layout.prop(ff, "job_name")
        layout.prop(ff, "output_format")
        if scene.render.is_movie_format and ff.output_format == props.SCENE_FORMAT:
            layout.prop(ff, "keep_frames")  # the farm makes the scene's movie; its frames on request
        else:
            layout.prop(ff, "movie")
        row = layout.row(align=True)
        row.scale_y = 1.4
        row.operator("framefarm.submit", icon="RENDER_STILL" if props.is_still(scene) else "RENDER_ANIMATION")
        if not props.is_still(scene):  # a few sample frames first: the time and cost of the rest
            row.operator("framefarm.submit", text="Estimate", icon="TIME").estimate = True
        blocker = operators.submit_blocker(context)
        cur = state.current
        if blocker and not cur.submitting:
            wrapped_label(layout, context, blocker, "INFO")
        if cur.missing_files and not cur.submitting:  # the last try was refused for these
            box = layout.box()
            box.label(text=f"{len(cur.missing_files)} referenced file(s) do not exist:", icon="ERROR")
            for ref in cur.missing_files[:20]:
                wrapped_label(box, context, ref, "BLANK1")
            box.operator("framefarm.submit", text="Submit Anyway", icon="ERROR").allow_missing = True
        if cur.submitting or cur.progress_text:
            if cur.progress_fraction is not None:
                progress(layout, cur.progress_fraction, cur.progress_text)
            else:
                layout.label(text=cur.progress_text or "Working...", icon="SORTTIME")
        self.draw_jobs(layout, context)

    def draw_jobs(self, layout: bpy.types.UILayout, context: bpy.types.Context) -> None:
        store = state.current.store
        records = store.records(operators.blend_key()) if store else []
        if not records:
            return
        box = layout.box()
        box.label(text="Farm Jobs of This File")
        for rec in records[:10]:
            col = box.column(align=True)
            row = col.row(align=True)
            row.label(text=f"{rec['name']} ({rec['frames']})", icon=STATUS_ICONS.get(rec["status"], "QUESTION"))
            if rec["status"] in ("queued", "running"):
                paused = rec.get("paused", False)
                row.operator("framefarm.resume" if paused else "framefarm.pause", text="",
                             icon="PLAY" if paused else "PAUSE").job_id = rec["id"]
                row.operator("framefarm.cancel", text="", icon="X").job_id = rec["id"]
            elif rec["status"] == "estimated":
                row.operator("framefarm.cancel", text="", icon="X").job_id = rec["id"]
            elif rec["status"] == "done":
                row.operator("framefarm.download", text="", icon="IMPORT").job_id = rec["id"]
                row.operator("framefarm.open_link", text="", icon="URL").job_id = rec["id"]
                row.operator("framefarm.copy_link", text="", icon="COPYDOWN").job_id = rec["id"]
            if rec["status"] in TERMINAL:  # an assembling job is still the farm's
                row.operator("framefarm.forget", text="", icon="TRASH").job_id = rec["id"]
            total = max(1, rec["total"])
            progress(col, rec["done"] / total, f"{rec['status']}: {rec['done']} / {rec['total']} frames")
            note = rec.get("error") or rec.get("waiting")
            if note:
                wrapped_label(col, context, note, "ERROR" if rec.get("error") else "INFO")
            self.draw_estimate(col, context, rec)
            self.draw_strip(col, rec)

    @staticmethod
    def draw_estimate(layout: bpy.types.UILayout, context: bpy.types.Context, rec: dict) -> None:
        est = rec.get("estimate")
        if not est:
            return
        for line in estimate_lines(est):
            wrapped_label(layout, context, line, "TIME")
        if rec["status"] == "estimated":
            layout.operator("framefarm.resume", text="Render All", icon="RENDER_ANIMATION").job_id = rec["id"]

    @staticmethod
    def draw_strip(layout: bpy.types.UILayout, rec: dict) -> None:
        """The latest finished frames' previews, and the flipbook of all of them."""
        shown = [(frame, icon) for frame, icon in thumbs.strip(rec["id"]) if icon]
        if not shown:
            return
        # Rows of STRIP_COLUMNS: the Properties editor is narrow, and an icon shrinks to its cell's width.
        grid = layout.grid_flow(row_major=True, columns=STRIP_COLUMNS, even_columns=True, align=True)
        for frame, icon in shown:
            cell = grid.column(align=True)
            cell.template_icon(icon_value=icon, scale=THUMB_SCALE)
            cell.label(text=str(frame))
        layout.operator("framefarm.flipbook", icon="PLAY").job_id = rec["id"]



CLASSES = (FRAMEFARM_PT_output,)
