"""The part of the render back end that runs inside Blender.

render.py copies this function's source into a script that Blender runs with
`--python` after loading the scene and before rendering; it therefore imports
what it needs itself and must stay valid in every Blender's Python (3.10+).
"""
from __future__ import annotations

from framefarm.worker.still_piece import _still_piece  # appended to the script for a still's piece


def _blender_setup(params: dict) -> None:
    """Runs inside Blender, after the scene loads and before it renders.

    Its source is copied into a script file, so it imports what it needs itself
    and must stay valid in every Blender's Python (3.10 and later).
    """
    import json
    import struct

    import bpy

    scene = bpy.context.scene
    render = scene.render

    # Every reason the scene cannot render, said at once so the artist fixes them in one go.
    reasons = []
    saved, running = tuple(bpy.data.version[:2]), tuple(bpy.app.version[:2])
    if saved > running:
        reasons.append(f"the scene was saved by Blender {saved[0]}.{saved[1]}, newer than this worker's "
                       f"Blender {bpy.app.version_string}")
    if render.is_movie_format:  # after the job's -F, which comes first on the command line
        reasons.append(f"the scene's output format is {render.image_settings.file_format}, a video, and this job "
                       "asks for frames only: submit it with framefarm submit or the add-on, which render its "
                       "frames as PNG and make the movie on the farm, or choose an image format such as PNG "
                       "or OpenEXR in Output Properties, or submit with --format PNG")
    # Blender's own check, in its words: with no active camera it takes the view layer's first
    # camera object, and a sequencer edit of picture strips renders without any camera.
    edit = scene.sequence_editor
    strips = [] if edit is None else getattr(edit, "strips_all", None)  # Blender 5.0's name
    if strips is None:
        strips = edit.sequences_all  # before 5.0
    pictures = any(strip.type != "SOUND" for strip in strips)
    cameras = any(obj.type == "CAMERA" for layer in scene.view_layers for obj in layer.objects)
    if scene.camera is None and not cameras and not (render.use_sequencer and pictures):
        reasons.append("Cannot render, no camera")
    if reasons:
        message = "; ".join(reasons)
        print("FRAMEFARM-ERROR: " + message, flush=True)
        raise RuntimeError(message)
    if params.get("piece"):  # a piece of a split still (still_piece.py, whose source follows this one's)
        _still_piece(scene, params["piece"])
    render.use_overwrite = True  # a frame left by an earlier try must not count as rendered
    render.use_placeholder = False  # an empty placeholder would pass for a frame
    cycles = getattr(scene, "cycles", None)
    optix = params["device"] == "OPTIX" and getattr(cycles, "denoiser", "") == "OPTIX"
    if cycles is not None and not params["has_oidn"] and not optix:
        if render.engine == "CYCLES" and cycles.use_denoising:
            print("FRAMEFARM-WARNING: denoising switched off: this Blender has no OpenImageDenoise")
        cycles.use_denoising = False
        for layer in scene.view_layers:
            if hasattr(getattr(layer, "cycles", None), "use_denoising"):
                layer.cycles.use_denoising = False
        if hasattr(cycles, "use_preview_denoising"):
            cycles.use_preview_denoising = False

    # Blender's own arithmetic: integer percentage, float32 border corners.
    width = render.resolution_x * render.resolution_percentage // 100
    height = render.resolution_y * render.resolution_percentage // 100
    if render.use_border and render.use_crop_to_border:
        def f32(value: float) -> float:
            return float(struct.unpack("f", struct.pack("f", value))[0])
        width = int(f32(render.border_max_x * width)) - int(f32(render.border_min_x * width))
        height = int(f32(render.border_max_y * height)) - int(f32(render.border_min_y * height))
    views = []
    if render.use_multiview and render.image_settings.views_format == "STEREO_3D":
        width = height = None  # side by side, top-bottom, anaglyph: size depends on the mode
    elif render.use_multiview and render.image_settings.views_format == "INDIVIDUAL":
        views = [view.name for view in render.views if view.use
                 and (render.views_format == "MULTIVIEW" or view.name in ("left", "right"))]
    files = [[frame, [render.frame_path(frame=frame, view=view) for view in views]
              if views else [render.frame_path(frame=frame)]] for frame in params["frames"]]
    with open(params["expect"], "w", encoding="utf-8") as out:
        json.dump({"files": files, "width": width, "height": height,
                   "extension": render.file_extension}, out)
