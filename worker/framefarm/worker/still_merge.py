"""The merge of a split still: its pieces' bands into one frame, finished once, in the scene's format.

Each piece (still_piece.py) is the whole frame as 32-bit float OpenEXR, rendered only in
its band of rows. A Blender run on the scene copies each band into one float image, then
hands that image to the compositor in place of the render (the scene's own node tree
where it composites, else a plain Image -> Composite), and renders: with no Render
Layers node left Blender only composites, then writes the frame as a render would, in
the scene's format, colour depth and colour management (view transform, look,
exposure, dither). So the bands are joined in linear float and everything that mixes
neighbouring pixels or leaves linear light happens once, to the whole frame.

`_merge_still` runs inside Blender (its source, with still_piece's `_band_rows`, is
copied into the script), so it imports what it needs itself. A piece of the wrong size or
kind (a hostile or broken worker's) fails the merge with its number; rows outside a
piece's band are never read, so they cannot leak into the frame.
"""
from __future__ import annotations

import contextlib
import inspect
import json
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any

from framefarm.worker.finishing import FinishOptions
from framefarm.worker.frames_check import FrameCheckError, check_frame
from framefarm.worker.limits import NO_LIMITS, FrameClock, Limits
from framefarm.worker.render import (BlenderInfo, RenderCancelled, RenderError, _Blender, _failure, _stop,
                                     _wait)
from framefarm.worker.sandbox import NO_SANDBOX, Sandbox
from framefarm.worker.still_piece import _band_rows

# The Blenders whose compositor this merge drives (3.x and 4.x name its nodes alike; 5.0
# moved the compositor to node groups, which the merge does not drive yet).
MERGE_BLENDER_RANGE = (300, 500)


def available() -> bool:
    """Every worker has a Blender to merge with (finishing.py's registry asks each kind)."""
    return True


def finish(inputs: Path, output: Path, options: FinishOptions) -> list[Path]:
    """finishing.py's entry: the pieces (one input part each, its index the piece's) merged
    into `output`, in the scene's format or the job's -F override."""
    info = options.blender
    if not MERGE_BLENDER_RANGE[0] <= info.version < MERGE_BLENDER_RANGE[1]:
        raise RenderError(f"this worker's Blender {info.version_string} cannot merge a still (the merge drives the "
                          "compositor of Blender 3.0 to 4.x)")
    pieces = {}
    for part in options.parts:  # the farm checked each piece's result: its frame, as OpenEXR
        files = sorted(part.folder.glob("*.exr"))
        if len(files) != 1:
            raise RenderError(f"piece {part.span.index}'s result holds {len(files)} OpenEXR images, not one")
        pieces[part.span.index] = files[0]
    root, main = options.scene()
    fmt = options.job.get("format")
    return merge_still(info, main, pieces, output, frame=options.span.start, scene_root=root,
                       output_format=fmt if isinstance(fmt, str) else None, sandbox=options.sandbox,
                       cancel=options.cancel, log_path=options.log_path)


def _merge_still(params: dict) -> None:  # pragma: no cover - runs inside Blender
    """Join the pieces' bands in float, composite once, write the frame; record where."""
    import array
    import json

    import bpy

    def refuse(message: str) -> None:
        print("FRAMEFARM-ERROR: " + message, flush=True)
        raise RuntimeError(message)

    scene = bpy.context.scene
    render = scene.render
    if render.is_movie_format:
        refuse(f"the scene's output format is {render.image_settings.file_format}, a video; a still is written "
               "as an image: choose an image format, or submit with --format PNG")
    scene.frame_set(params["frame"])
    width = render.resolution_x * render.resolution_percentage // 100
    height = render.resolution_y * render.resolution_percentage // 100
    size = width * height * 4
    merged = array.array("f", bytes(4 * size))
    image: Any = None
    for index, path in params["pieces"]:
        piece: Any = bpy.data.images.load(path, check_existing=False)
        got = tuple(piece.size)
        if piece.file_format != "OPEN_EXR" or not piece.is_float or piece.channels != 4:
            refuse(f"piece {index}'s image is not a 4-channel float OpenEXR ({piece.file_format}, "
                   f"{piece.channels} channels): it was not rendered by a Framefarm worker's piece setup")
        if got != (width, height):
            refuse(f"piece {index}'s image is {got[0]}x{got[1]} pixels, not the frame's {width}x{height}")
        pixels = array.array("f", bytes(4 * size))
        piece.pixels.foreach_get(pixels)
        first, stop = _band_rows(height, params["of"], index)  # noqa: F821 (copied beside it)
        merged[first * width * 4:stop * width * 4] = pixels[first * width * 4:stop * width * 4]
        if image is None:
            image = piece  # kept as loaded from EXR, so the compositor reads it as it reads a render
        else:
            bpy.data.images.remove(piece)
    image.pixels.foreach_set(merged)

    tree = scene.node_tree if scene.use_nodes and render.use_compositing else None
    if tree is None or not any(node.bl_idname == "CompositorNodeComposite" for node in tree.nodes):
        scene.use_nodes = True
        tree = scene.node_tree
        for node in list(tree.nodes):
            tree.nodes.remove(node)
        source = tree.nodes.new("CompositorNodeImage")
        composite = tree.nodes.new("CompositorNodeComposite")
        tree.links.new(source.outputs["Image"], composite.inputs["Image"])
    else:
        source = tree.nodes.new("CompositorNodeImage")
        for link in list(tree.links):
            if link.from_node.bl_idname == "CompositorNodeRLayers":  # only Image and Alpha: still_piece.py
                tree.links.new(source.outputs[link.from_socket.name], link.to_socket)
        for node in [node for node in tree.nodes if node.bl_idname == "CompositorNodeRLayers"]:
            tree.nodes.remove(node)
    source.image = image
    render.use_compositing = True
    render.use_sequencer = False
    render.use_border = False
    render.use_overwrite = True
    render.use_placeholder = False
    path = render.frame_path(frame=params["frame"])
    render.filepath = path  # a still is written where -o names it, but its #### left as they are
    bpy.ops.render.render(write_still=True)  # no Render Layers node left: Blender only composites
    with open(params["expect"], "w", encoding="utf-8") as out:
        json.dump({"path": path, "width": width, "height": height}, out)


def merge_still(info: BlenderInfo, scene: Path, pieces: dict[int, Path], out_dir: Path, *, frame: int,
                scene_root: Path | None = None, output_format: str | None = None,
                sandbox: Sandbox = NO_SANDBOX, cancel: threading.Event | None = None,
                log_path: Path | None = None, limits: Limits = NO_LIMITS) -> list[Path]:
    """Merge `pieces` (piece index -> its EXR, every index from 0) of `frame` of `scene` into
    one image in `out_dir`, in the scene's format (or Blender's -F `output_format`); returns
    [that file]. Raises RenderError (refused or failed: the message says which piece) or
    RenderCancelled."""
    if sorted(pieces) != list(range(len(pieces))) or not pieces:
        raise RenderError(f"the merge needs pieces 0 to N-1, not {sorted(pieces)}", deterministic=True)
    scene, out_dir = Path(scene).resolve(), Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    folders = sorted({path.resolve().parent for path in pieces.values()})
    with tempfile.TemporaryDirectory(prefix="framefarm-merge-") as tmp, \
            (log_path.open("a", encoding="utf-8") if log_path else contextlib.nullcontext()) as log:
        expect = Path(tmp) / "merged.json"
        params = {"frame": frame, "of": len(pieces), "expect": str(expect),
                  "pieces": [[index, str(pieces[index].resolve())] for index in sorted(pieces)]}
        script = Path(tmp) / "merge.py"
        script.write_text(f"{inspect.getsource(_band_rows)}\n\n{inspect.getsource(_merge_still)}\n"
                          f"_merge_still({params!r})\n", encoding="utf-8")
        cmd = sandbox.command(
            [info.path, "-b", "--factory-startup", "--disable-autoexec", str(scene), "-o", f"{out_dir}/####",
             *(["-F", output_format] if output_format else []), "--python-exit-code", "2", "--python", str(script)],
            read_only=[(scene_root or scene.parent).resolve(), *folders], writable=[out_dir, Path(tmp)])
        if log is not None:
            log.write(f"$ {subprocess.list2cmdline(cmd)}\n")
        try:
            run = _Blender(cmd, expect, "", log, threading.Lock(), FrameClock([frame]), sandbox.bwrap is not None)
        except OSError as exc:
            raise RenderError(f"cannot start Blender {info.path!r}: {exc}") from None
        outcome = _wait([run], cancel, limits)
        if outcome == "cancelled":
            raise RenderCancelled(f"merge of frame {frame} cancelled")
        if isinstance(outcome, _Blender):
            raise _failure(outcome)
        _stop([run])
        return [_verify(expect, out_dir, run)]


def _verify(expect: Path, out_dir: Path, run: _Blender) -> Path:
    """The merged frame, checked to lie in `out_dir` and to decode at the frame's size."""
    tail = "\n".join(run.tail)
    try:
        written = json.loads(expect.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RenderError("Blender exited without running Framefarm's merge script", tail) from None
    path = Path(written["path"])
    if path.resolve().parent != out_dir:
        raise RenderError(f"the merged frame {path} is not in the merge's output folder", tail)
    try:
        check_frame(path, written["width"], written["height"])
    except FrameCheckError as exc:
        raise RenderError(f"the merged frame is bad: {exc.message}", tail) from None
    return path

