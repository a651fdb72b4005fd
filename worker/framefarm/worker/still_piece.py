"""One piece of a split still: a band of the frame's rows, rendered as linear float.

A still job's parts are pieces of one frame (docs/stills.md says why they are bands of
rows and not shares of the samples). Each piece renders the whole scene with Blender's
render border set to its band, uncropped, so its image has the frame's full size and the
merge (still_merge.py) copies its rows into place. It is written as OpenEXR in 32-bit
float with compositing off: compositing, the colour management of the view and the
scene's own format are applied once, to the merged frame.

A scene that denoises is split too, where the farm has a worker to merge it that can
denoise (its Blender has OpenImageDenoise): the piece then renders noisy, with Cycles'
denoising data (albedo and normal) beside the image in a multilayer OpenEXR, and the merge
denoises the joined frame once, as Cycles would have denoised the single render.

`_still_piece` runs inside Blender: render.py appends its source (and `_band_rows` and
`_compositor`, which the merge's script uses too) to the setup script, and `_blender_setup`
calls it, so all must stay valid in every Blender's Python (3.10 and later) and import what
they need.
"""
from __future__ import annotations

import inspect
from typing import Any


def _band_rows(height: int, pieces: int, index: int) -> tuple[int, int]:
    """Rows [first, stop) of band `index` of `pieces`, counted from the bottom row as
    Blender counts them; bands differ by at most one row and cover every row once."""
    return height * index // pieces, height * (index + 1) // pieces


def _compositor(scene: "Any") -> "tuple[Any, Any]":
    """(node tree, its output node) of the compositing `scene` does when it renders, else
    (None, None). Blender 5.0 moved the compositor into a node group (the scene's
    compositing_node_group, output by its Group Output node); 3.x and 4.x keep a tree on the
    scene, output by its Composite node, used only with use_nodes."""
    render = scene.render
    if not render.use_compositing:
        return None, None
    if hasattr(scene, "compositing_node_group"):  # 5.0 and later
        tree, kind = scene.compositing_node_group, "NodeGroupOutput"
    else:
        tree, kind = (scene.node_tree if scene.use_nodes else None), "CompositorNodeComposite"
    outputs = [node for node in tree.nodes if node.bl_idname == kind] if tree is not None else []
    active = [node for node in outputs if getattr(node, "is_active_output", True)]
    if not outputs:
        return None, None
    return tree, (active or outputs)[0]


def _still_piece(scene: "Any", piece: dict) -> None:  # quoted: the copied script has no Any
    """Set `scene` up to render band piece["index"] of piece["of"] as a float EXR; raise
    (after a FRAMEFARM-ERROR line, which the farm takes as final) for what cannot be split."""
    render = scene.render
    reasons = []
    if render.engine != "CYCLES":
        # Eevee's and Workbench's screen-space effects (bloom, reflections, ambient occlusion,
        # anti-aliasing) read neighbouring pixels, so a band would not match the frame.
        reasons.append(f"a split still needs Cycles, whose pixels do not depend on their neighbours; this "
                       f"scene renders with {render.engine}")
    cycles = getattr(scene, "cycles", None)
    layers = [layer for layer in scene.view_layers if layer.use]
    denoises = render.engine == "CYCLES" and cycles is not None and cycles.use_denoising and any(
        getattr(getattr(layer, "cycles", None), "use_denoising", True) for layer in layers)
    if denoises and not piece.get("denoise"):
        # The farm checks for a worker that can denoise the merged frame only for a still
        # submitted as denoising (framefarm submit and the add-on read that from the scene).
        reasons.append("the scene denoises, and this still was submitted without \"denoise\": true, so no "
                       "worker that can denoise the merged frame was asked for: submit it again with denoise "
                       "(framefarm submit and the add-on do so for a scene that denoises), or turn Denoise off "
                       "in Render Properties > Sampling > Render")
    if render.use_border:
        reasons.append("the scene renders only a region (Render Region in Output Properties); a split still "
                       "renders the whole frame: turn Render Region off")
    if render.use_multiview:
        reasons.append("the scene renders stereo views, which a split still does not support")
    tree = _compositor(scene)[0]
    if tree is not None:
        # The merge feeds the compositor the merged image in place of the render: anything
        # else a Render Layers node gives (passes, other view layers) the pieces do not carry.
        for link in tree.links:
            node = link.from_node
            if node.bl_idname == "CompositorNodeRLayers" and (
                    link.from_socket.name not in ("Image", "Alpha") or len(layers) != 1
                    or node.layer != layers[0].name or (node.scene is not None and node.scene != scene)):
                reasons.append(f"the compositor reads {link.from_socket.name!r} of view layer {node.layer!r}: a "
                               "split still's compositing can use only the Image and Alpha of the scene's one "
                               "view layer")
                break
    if len(layers) != 1:
        reasons.append(f"the scene renders {len(layers)} view layers; a split still renders exactly one")
    if not scene.frame_start <= piece["frame"] <= scene.frame_end:
        reasons.append(f"frame {piece['frame']} is outside the scene's frames {scene.frame_start}-{scene.frame_end}")
    height = render.resolution_y * render.resolution_percentage // 100
    if piece["of"] > height:
        reasons.append(f"the frame is {height} pixels high, too few rows for {piece['of']} pieces")
    if reasons:
        message = "; ".join(reasons)
        print("FRAMEFARM-ERROR: " + message, flush=True)
        raise RuntimeError(message)
    first, stop = _band_rows(height, piece["of"], piece["index"])
    # Blender takes a border's rows as int(border * height) in float32: half a row past each
    # edge truncates to the edge itself however the division rounds.
    render.use_border, render.use_crop_to_border = True, False
    render.border_min_x, render.border_max_x = 0.0, 1.0
    render.border_min_y = 0.0 if first == 0 else (first + 0.5) / height
    render.border_max_y = 1.0 if stop == height else (stop + 0.5) / height
    render.use_compositing = False
    render.use_sequencer = False
    settings = render.image_settings
    if hasattr(settings, "media_type"):  # 5.0: a video scene offers only video formats
        settings.media_type = "MULTI_LAYER_IMAGE" if denoises else "IMAGE"
    settings.file_format = "OPEN_EXR_MULTILAYER" if denoises else "OPEN_EXR"
    settings.color_depth = "32"
    settings.color_mode = "RGBA"
    settings.exr_codec = "ZIP"
    if denoises:
        # Noisy, with the albedo and normal Cycles' denoiser reads: the merge denoises the
        # joined frame once, with these passes (a band denoised alone would not match).
        scene.cycles.use_denoising = False
        for layer in layers:
            layer.cycles.denoising_store_passes = True


def setup_source() -> str:
    """The source render.py appends to the setup script of a still's piece."""
    return "\n\n".join(inspect.getsource(f) for f in (_band_rows, _compositor, _still_piece))
