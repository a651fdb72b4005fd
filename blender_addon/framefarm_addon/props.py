"""The job settings an artist picks in the Output panel (saved with the scene,
like Blender's own render range)."""
from __future__ import annotations

import bpy

from ._vendor.framefarm.client.formats import IMAGE_FORMATS
from ._vendor.framefarm.common.frameset import FrameRange

SCENE_FORMAT = "SCENE"  # the enum's "no override" item: render in the scene's own format
STILL = "STILL"  # the mode that splits the current frame into pieces (docs/stills.md)
MAX_PIECES = 64  # the farm's limit (openapi.yaml's JobRequest.pieces)


class FramefarmSceneSettings(bpy.types.PropertyGroup):
    mode: bpy.props.EnumProperty(  # type: ignore[valid-type]
        name="Mode", default="ANIMATION",
        items=[("ANIMATION", "Animation", "Render a range of frames, each on one worker"),
               (STILL, "Still", "Render the current frame split into pieces that several workers render at "
                               "once, merged into one image as F12 would give (Cycles)")])
    pieces: bpy.props.IntProperty(  # type: ignore[valid-type]
        name="Pieces", default=0, min=0, max=MAX_PIECES,
        description="How many pieces (bands of rows) the still is split into; 0: one per worker on the farm")
    use_scene_range: bpy.props.BoolProperty(  # type: ignore[valid-type]
        name="Scene Range", default=True,
        description="Render the scene's frame range and step; off to choose another range for the farm")
    frame_start: bpy.props.IntProperty(name="Start", default=1, min=0, max=1048574)  # type: ignore[valid-type]
    frame_end: bpy.props.IntProperty(name="End", default=250, min=0, max=1048574)  # type: ignore[valid-type]
    frame_step: bpy.props.IntProperty(name="Step", default=1, min=1, max=1000)  # type: ignore[valid-type]
    chunk: bpy.props.IntProperty(  # type: ignore[valid-type]
        name="Frames per Part", default=0, min=0, max=100000,
        description="How many frames one worker renders at a time; 0 lets the farm choose")
    priority: bpy.props.IntProperty(  # type: ignore[valid-type]
        name="Priority", default=0, min=-1000, max=1000, description="Higher runs first")
    job_name: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="Job Name", default="", description="Shown on the farm; empty uses the file's name")
    output_format: bpy.props.EnumProperty(  # type: ignore[valid-type]
        name="File Format", default=SCENE_FORMAT,
        description="The image format the farm renders in: the scene's own, or another (Blender's -F). A "
                    "scene set to a video output renders lossless frames and the farm makes its movie; an "
                    "image format here renders frames in it instead, without the movie",
        items=[(SCENE_FORMAT, "Scene's Format", "Render in the format set in Output Properties"),
               *((name, name.replace("_", " ").title().replace("Exr", "EXR"), f"Render frames as {name}")
                 for name in IMAGE_FORMATS)])
    movie: bpy.props.BoolProperty(  # type: ignore[valid-type]
        name="Movie Preview", default=False,
        description="Also make an H.264 MP4 of the frames at the scene's frame rate (on a worker with ffmpeg), "
                    "beside them in the result")
    keep_frames: bpy.props.BoolProperty(  # type: ignore[valid-type]
        name="Keep Frames", default=False,
        description="A scene set to a video output: keep its frames (lossless PNG) beside the movie the farm "
                    "makes; off, the result is the movie alone")


def settings(scene: bpy.types.Scene) -> FramefarmSceneSettings:
    return scene.framefarm  # type: ignore[attr-defined]


def frame_range(scene: bpy.types.Scene) -> FrameRange:
    """The frames the farm will render; FrameSpecError (saying why) if they cannot be."""
    ff = settings(scene)
    if ff.use_scene_range:
        return FrameRange(scene.frame_start, scene.frame_end, scene.frame_step)
    return FrameRange(ff.frame_start, ff.frame_end, ff.frame_step)


def is_still(scene: bpy.types.Scene) -> bool:
    return settings(scene).mode == STILL


def still_blockers(scene: bpy.types.Scene) -> list[str]:
    """Why the farm would refuse to split this scene's still (worker/still_piece.py says the
    same when a piece starts), so the artist hears it before anything is uploaded. A scene that
    denoises is sent as such (client/stills.py reads it); the farm refuses it at submit where
    no worker can denoise the merged frame (docs/stills.md)."""
    reasons = []
    if scene.render.engine != "CYCLES":
        reasons.append("Still mode splits Cycles renders only: switch the render engine to Cycles, or render "
                       "the frame as a one-frame animation")
    if scene.render.use_border:
        reasons.append("Still mode renders the whole frame: turn Render Region off")
    return reasons


def output_format(scene: bpy.types.Scene) -> str | None:
    """The format override to send with the job; None for the scene's own."""
    chosen = settings(scene).output_format
    return None if chosen == SCENE_FORMAT else chosen


def job_name(scene: bpy.types.Scene) -> str:
    name = settings(scene).job_name.strip()
    return name or bpy.path.display_name_from_filepath(bpy.data.filepath) or "untitled"


CLASSES = (FramefarmSceneSettings,)


def register() -> None:
    bpy.types.Scene.framefarm = bpy.props.PointerProperty(  # type: ignore[attr-defined, func-returns-value]
        type=FramefarmSceneSettings)


def unregister() -> None:
    del bpy.types.Scene.framefarm  # type: ignore[attr-defined]
