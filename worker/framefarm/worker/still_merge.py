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
import logging
import signal
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any

from framefarm.common.api_types import Capability
from framefarm.common.procs import die_with_parent
from framefarm.worker.finishing import FinishOptions
from framefarm.worker.frames_check import FrameCheckError, check_frame
from framefarm.worker.limits import NO_LIMITS, FrameClock, Limits
from framefarm.worker.render import (BlenderInfo, RenderCancelled, RenderError, _Blender, _failure, _stop,
                                     _wait)
from framefarm.worker.sandbox import NO_SANDBOX, Sandbox, clean_env
from framefarm.worker.still_piece import _band_rows, _compositor

log = logging.getLogger("framefarm.worker")

# The Blenders whose compositor this merge drives (3.x and 4.x keep it on the scene; 5.0
# moved it into a node group: still_piece._compositor reads both).
MERGE_BLENDER_RANGE = (300, 600)


# Printed by the denoise probe's Blender (split, so a program echoing its arguments cannot fake it).
_DENOISE_MARKER = "FRAMEFARM-MERGE-DENOISE "
DENOISE_PROBE_TIMEOUT_S = 120.0


def available() -> bool:
    """Every worker has a Blender to merge with (finishing.py's registry asks each kind)."""
    return True


def variants(blender: BlenderInfo, sandbox: Sandbox = NO_SANDBOX) -> list[Capability]:
    """["merge-denoise"] where this worker's merge can denoise a still: its Blender has
    OpenImageDenoise and the compositor's Denoise node, and its Python OpenImageIO and numpy
    to read the pieces' passes (Blender bundles both since 4.3). Asked of Blender once, in the
    sandbox its merges run in, when the worker starts; Debian's 3.4 is not asked (no OIDN)."""
    if not blender.has_oidn or not MERGE_BLENDER_RANGE[0] <= blender.version < MERGE_BLENDER_RANGE[1]:
        return []
    probe = (f"{inspect.getsource(_image_io)}\nimport bpy\n_image_io()\n"
             f"if hasattr(bpy.types, 'CompositorNodeDenoise'): print({_DENOISE_MARKER[:9]!r} + "
             f"{_DENOISE_MARKER[9:]!r} + 'yes', flush=True)\n")
    cmd = sandbox.command([blender.path, "-b", "--factory-startup", "--python-exit-code", "1", "--python-expr",
                           probe])
    try:
        done = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, env=clean_env(),
                              errors="replace", timeout=DENOISE_PROBE_TIMEOUT_S,
                              preexec_fn=die_with_parent(signal.SIGKILL))
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("cannot tell whether Blender %s merges denoised stills: %s", blender.version_string, exc)
        return []
    if any(line.startswith(_DENOISE_MARKER) for line in done.stdout.splitlines()):
        return ["merge-denoise"]
    log.info("Blender %s has OpenImageDenoise but cannot merge denoised stills (no OpenImageIO or numpy in its "
             "Python, or no Denoise node)", blender.version_string)
    return []


def finish(inputs: Path, output: Path, options: FinishOptions) -> list[Path]:
    """finishing.py's entry: the pieces (one input part each, its index the piece's) merged
    into `output`, in the scene's format or the job's -F override."""
    info = options.blender
    if not MERGE_BLENDER_RANGE[0] <= info.version < MERGE_BLENDER_RANGE[1]:
        raise RenderError(f"this worker's Blender {info.version_string} cannot merge a still (the merge drives the "
                          "compositor of Blender 3.0 to 5.x)")
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


def _image_io() -> "tuple[Any, Any]":  # pragma: no cover - runs inside Blender
    """numpy and OpenImageIO from Blender's own Python, which bundles both (OpenImageIO since
    4.3); the bpy module leaves its bundled packages off sys.path, so they are put on it."""
    import glob
    import importlib
    import os
    import sys

    import bpy

    try:
        return importlib.import_module("numpy"), importlib.import_module("OpenImageIO")
    except ImportError:
        local = bpy.utils.resource_path("LOCAL")
        sys.path.extend(glob.glob(os.path.join(local, "python", "lib", "python3*", "site-packages")))
        return importlib.import_module("numpy"), importlib.import_module("OpenImageIO")


def _merge_still(params: dict) -> None:  # pragma: no cover - runs inside Blender
    """Join the pieces' bands in float, denoise them where the scene does, composite once,
    write the frame; record where."""
    import array
    import json
    import os

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
    cycles = getattr(scene, "cycles", None)
    layers = [layer for layer in scene.view_layers if layer.use]
    denoise = render.engine == "CYCLES" and cycles is not None and cycles.use_denoising and any(
        getattr(getattr(layer, "cycles", None), "use_denoising", True) for layer in layers)
    sources = {}  # what the compositor reads in place of the render: "Image" (and "Normal", "Albedo")
    if denoise:
        # The pieces are multilayer OpenEXR (still_piece.py) with Cycles' denoising data, which
        # Blender's image loader cannot take apart by pass: OpenImageIO (bundled with Blender's
        # Python since 4.3) reads the channels, numpy joins the bands, and each merged pass is
        # written as a plain float OpenEXR that Blender loads as it loads a render.
        try:
            numpy, oiio = _image_io()  # noqa: F821 (copied beside it)
        except ImportError as exc:
            refuse(f"this worker's Blender {bpy.app.version_string} cannot merge a denoised still ({exc})")
        passes = {"Image": ("Combined", "RGBA"), "Normal": ("Denoising Normal", "XYZ"),
                  "Albedo": ("Denoising Albedo", "RGB")}
        merged = {name: numpy.zeros((height, width, len(channels)), numpy.float32)
                  for name, (_, channels) in passes.items()}
        for index, path in params["pieces"]:
            found = oiio.ImageInput.open(path)
            if found is None:
                refuse(f"piece {index}'s image cannot be read: {oiio.geterror()}")
            spec = found.spec()
            if (spec.width, spec.height) != (width, height):
                refuse(f"piece {index}'s image is {spec.width}x{spec.height} pixels, not the frame's "
                       f"{width}x{height}")
            names = list(spec.channelnames)
            pixels = found.read_image(0, 0, 0, spec.nchannels, "float")
            found.close()
            first, stop = _band_rows(height, params["of"], index)  # noqa: F821 (copied beside it)
            top, bottom = height - stop, height - first  # OpenImageIO counts rows from the top
            for name, (layer_pass, channels) in passes.items():
                columns = []
                for channel in channels:
                    wanted = [i for i, got in enumerate(names) if got.endswith(f".{layer_pass}.{channel}")]
                    if len(wanted) != 1:
                        refuse(f"piece {index}'s image has no single {layer_pass}.{channel} channel: it was not "
                               "rendered by a Framefarm worker's piece setup for a denoised still")
                    columns.append(wanted[0])
                merged[name][top:bottom] = numpy.asarray(pixels, numpy.float32).reshape(
                    height, width, spec.nchannels)[top:bottom, :, columns]
        for name, values in merged.items():
            path = os.path.join(params["work"], f"{name.lower()}.exr")
            spec = oiio.ImageSpec(width, height, values.shape[2], "float")
            out = oiio.ImageOutput.create(path)
            if out is None or not out.open(path, spec) or not out.write_image(values) or not out.close():
                refuse(f"cannot write the merged {name} pass: {oiio.geterror()}")
            sources[name] = bpy.data.images.load(path, check_existing=False)
            if name == "Normal":
                sources[name].colorspace_settings.is_data = True
    else:
        size = width * height * 4
        merged_rgba = array.array("f", bytes(4 * size))
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
            merged_rgba[first * width * 4:stop * width * 4] = pixels[first * width * 4:stop * width * 4]
            if image is None:
                image = piece  # kept as loaded from EXR, so the compositor reads it as it reads a render
            else:
                bpy.data.images.remove(piece)
        image.pixels.foreach_set(merged_rgba)
        sources["Image"] = image

    tree, output = _compositor(scene)  # noqa: F821 (copied beside it)
    if tree is None:  # a plain tree: the merged image is the frame
        if hasattr(scene, "compositing_node_group"):  # 5.0: the compositor is a node group
            groups: Any = bpy.data.node_groups  # the stubs know no compositor groups (5.0)
            tree = groups.new("Framefarm merge", "CompositorNodeTree")
            tree.interface.new_socket("Image", in_out="OUTPUT", socket_type="NodeSocketColor")
            output = tree.nodes.new("NodeGroupOutput")
            scene.compositing_node_group = tree
        else:
            scene.use_nodes = True
            tree = scene.node_tree
            for node in list(tree.nodes):
                tree.nodes.remove(node)
            output = tree.nodes.new("CompositorNodeComposite")
        targets = [("Image", output.inputs[0])]
    else:  # the scene's own tree, its Render Layers node's links (Image, Alpha: still_piece.py) rewired
        targets = [(link.from_socket.name, link.to_socket) for link in tree.links
                   if link.from_node.bl_idname == "CompositorNodeRLayers"]
        for node in [node for node in tree.nodes if node.bl_idname == "CompositorNodeRLayers"]:
            tree.nodes.remove(node)
    source = tree.nodes.new("CompositorNodeImage")
    source.image = sources["Image"]
    image_out = source.outputs["Image"]
    if denoise:
        # As Cycles' own OpenImageDenoise pass would: its prefilter and quality, and the guiding
        # passes it reads (albedo, normal).
        denoiser = tree.nodes.new("CompositorNodeDenoise")
        tree.links.new(source.outputs["Image"], denoiser.inputs["Image"])
        guides = {"RGB": (), "RGB_ALBEDO": ("Albedo",)}.get(cycles.denoising_input_passes, ("Albedo", "Normal"))
        for name in guides:
            guide = tree.nodes.new("CompositorNodeImage")
            guide.image = sources[name]
            tree.links.new(guide.outputs["Image"], denoiser.inputs[name])
        settings = {"Prefilter": cycles.denoising_prefilter, "Quality": getattr(cycles, "denoising_quality", "HIGH"),
                    "HDR": True}
        for name, value in settings.items():
            if name in denoiser.inputs:  # 5.0: options are inputs
                denoiser.inputs[name].default_value = value.title() if isinstance(value, str) else value
            else:
                attr = {"HDR": "use_hdr"}.get(name, name.lower())
                if hasattr(denoiser, attr):
                    setattr(denoiser, attr, value)
        image_out = denoiser.outputs["Image"]
    for name, socket in targets:
        tree.links.new(image_out if name == "Image" else source.outputs[name], socket)
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
        params = {"frame": frame, "of": len(pieces), "expect": str(expect), "work": tmp,
                  "pieces": [[index, str(pieces[index].resolve())] for index in sorted(pieces)]}
        script = Path(tmp) / "merge.py"
        source = "\n\n".join(inspect.getsource(f) for f in (_band_rows, _compositor, _image_io, _merge_still))
        script.write_text(f"{source}\n_merge_still({params!r})\n", encoding="utf-8")
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

