"""Generate small Blender scenes for Framefarm's tests, samples and benchmarks.

Run inside Blender (3.4 up to 5.0):

    blender -b --factory-startup --python-exit-code 1 --python scripts/make_scene.py -- \\
        --output OUT.blend [--size 48] [--frames 1-250] [--samples 4] [--engine CYCLES] \\
        [--denoise] [--no-camera] [--texture PATH] [--format PNG] [--animated] [--compress]

``--python-exit-code 1`` must come before ``--python``: without it Blender exits with 0
even when this script raises. The script exits with 1 itself on any error and prints
``make_scene: saved /abs/OUT.blend`` when done.

Every scene is a monkey with a lit material, a sun, a world and a camera looking at it,
rendered tiny and with few samples so a frame costs well under a second on a CPU. Its
output path is ``//`` (the .blend's folder), or ``--filepath``: the worker renders into its own
folder, and the farm names the frames in its zip as this path does (common/output_names.py). Some options build
scenes that are meant to go wrong on a farm (``--denoise`` asks for a denoiser a worker
may lack, ``--no-camera`` cannot render, ``--texture`` needs an external file shipped
along), so tests can check how the farm copes.

Blender's Python API moved between 3.4 and 5.0; differences are handled where they
occur, by testing for attributes rather than version numbers.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import traceback

import bpy

ENGINES = ("CYCLES", "BLENDER_EEVEE", "BLENDER_WORKBENCH")
FORMATS = ("PNG", "OPEN_EXR", "OPEN_EXR_MULTILAYER", "JPEG", "TIFF", "FFMPEG")
EXTENSIONS = {"PNG": ".png", "OPEN_EXR": ".exr", "OPEN_EXR_MULTILAYER": ".exr", "JPEG": ".jpg", "TIFF": ".tif",
              "FFMPEG": ".mp4"}


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Parse the arguments after ``--``; Blender keeps everything before it for itself."""
    argv = argv[argv.index("--") + 1:] if "--" in argv else []
    parser = argparse.ArgumentParser(prog="make_scene.py", description=__doc__.split("\n")[0])
    parser.add_argument("--output", required=True, help="the .blend file to write")
    parser.add_argument("--size", type=int, default=48, help="resolution in pixels, x and y")
    parser.add_argument("--frames", type=parse_frames, default=(1, 250), help="A-B, scene range")
    parser.add_argument("--samples", type=int, default=4, help="render samples")
    parser.add_argument("--engine", choices=ENGINES, default="CYCLES")
    parser.add_argument("--denoise", action="store_true",
                        help="turn on Cycles render denoising with OpenImageDenoise")
    parser.add_argument("--no-camera", action="store_true", help="no camera: renders fail")
    parser.add_argument("--texture", metavar="PATH",
                        help="write a PNG texture here and use it by a relative path")
    parser.add_argument("--format", choices=FORMATS, default="PNG", help="output file format")
    parser.add_argument("--filepath", default="//", help="the output path (Output Properties), e.g. //render/shot_####")
    parser.add_argument("--no-file-extension", action="store_true", help="File Extensions off: frames named without one")
    parser.add_argument("--animated", action="store_true", help="keyframe the object")
    parser.add_argument("--compress", action="store_true", help="save the .blend compressed")
    args = parser.parse_args(argv)
    if args.size < 1 or args.samples < 1:
        parser.error("--size and --samples must be 1 or more")
    return args


def parse_frames(text: str) -> tuple[int, int]:
    """'A-B' (or 'A') into (start, end)."""
    start, _, end = text.partition("-")
    try:
        first, last = int(start), int(end or start)
    except ValueError:
        raise argparse.ArgumentTypeError(f"frames must look like 1-250, not {text!r}") from None
    if first < 0 or last < first:
        raise argparse.ArgumentTypeError(f"frames must be 0 <= A <= B, not {text!r}")
    return first, last


def new_scene() -> bpy.types.Scene:
    """Start from an empty file so the startup file's contents, which vary by version,
    never leak into the scene."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    return bpy.context.scene


def node_of_type(node_tree: bpy.types.NodeTree, node_type: str) -> bpy.types.Node:
    return next(node for node in node_tree.nodes if node.type == node_type)


def ensure_node_tree(datablock: bpy.types.ID) -> bpy.types.NodeTree:
    """Materials and worlds always have nodes from 5.0 on, where use_nodes is deprecated."""
    if datablock.node_tree is None:
        datablock.use_nodes = True
    return datablock.node_tree


def add_world(scene: bpy.types.Scene) -> None:
    world = bpy.data.worlds.new("World")
    background = node_of_type(ensure_node_tree(world), "BACKGROUND")
    background.inputs["Color"].default_value = (0.05, 0.06, 0.08, 1.0)
    background.inputs["Strength"].default_value = 1.0
    scene.world = world


def add_object(texture: str | None) -> tuple[bpy.types.Object, bpy.types.Image | None]:
    """The subject: a monkey (its UVs take a texture), textured when asked."""
    bpy.ops.mesh.primitive_monkey_add(size=2.0, location=(0.0, 0.0, 0.0))
    obj = bpy.context.active_object
    obj.name = "Subject"
    material = bpy.data.materials.new("SubjectMaterial")
    tree = ensure_node_tree(material)
    shader = node_of_type(tree, "BSDF_PRINCIPLED")
    shader.inputs["Base Color"].default_value = (0.8, 0.3, 0.1, 1.0)
    image = None
    if texture:
        image = write_texture(texture)
        image_node = tree.nodes.new("ShaderNodeTexImage")
        image_node.image = image
        tree.links.new(image_node.outputs["Color"], shader.inputs["Base Color"])
    obj.data.materials.append(material)
    return obj, image


def write_texture(path: str) -> bpy.types.Image:
    """A checkerboard PNG on disk; made relative to the .blend only after saving, because
    Blender computes '//' paths from the saved file's folder."""
    size = 16
    image = bpy.data.images.new("Checker", width=size, height=size, alpha=False)
    pixels = []
    for y in range(size):
        for x in range(size):
            light = (x // 4 + y // 4) % 2 == 0
            pixels += [0.9, 0.9, 0.2, 1.0] if light else [0.1, 0.2, 0.8, 1.0]
    image.pixels[:] = pixels
    image.filepath_raw = os.path.abspath(path)
    image.file_format = "PNG"
    os.makedirs(os.path.dirname(image.filepath_raw), exist_ok=True)
    image.save()
    image.source = "FILE"
    return image


def add_light_and_camera(scene: bpy.types.Scene, with_camera: bool) -> None:
    sun = bpy.data.objects.new("Sun", bpy.data.lights.new("Sun", type="SUN"))
    sun.data.energy = 3.0
    sun.rotation_euler = (math.radians(50), 0.0, math.radians(-30))
    scene.collection.objects.link(sun)
    if not with_camera:
        scene.camera = None
        return
    camera = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
    camera.location = (0.0, -6.0, 0.0)
    camera.rotation_euler = (math.radians(90), 0.0, 0.0)  # looks along +Y, at the origin
    scene.collection.objects.link(camera)
    scene.camera = camera


def animate(obj: bpy.types.Object, start: int, end: int) -> None:
    """Linear keys, so every frame differs from its neighbours, not only mid-range ones."""
    edit_prefs = bpy.context.preferences.edit
    if hasattr(edit_prefs, "keyframe_new_interpolation_type"):
        edit_prefs.keyframe_new_interpolation_type = "LINEAR"
    obj.rotation_euler = (0.0, 0.0, 0.0)
    obj.location = (-0.5, 0.0, 0.0)
    obj.keyframe_insert(data_path="rotation_euler", frame=start)
    obj.keyframe_insert(data_path="location", frame=start)
    obj.rotation_euler = (0.0, 0.0, math.radians(360))
    obj.location = (0.5, 0.0, 0.0)
    end = max(end, start + 1)  # one frame still needs two keys to move
    obj.keyframe_insert(data_path="rotation_euler", frame=end)
    obj.keyframe_insert(data_path="location", frame=end)


def set_engine(scene: bpy.types.Scene, engine: str, samples: int, denoise: bool) -> None:
    if engine == "BLENDER_EEVEE":
        try:
            scene.render.engine = "BLENDER_EEVEE"
        except TypeError:  # 4.2 to 4.4 call EEVEE Next by its own name
            scene.render.engine = "BLENDER_EEVEE_NEXT"
        scene.eevee.taa_render_samples = samples
    else:
        scene.render.engine = engine
    # Cycles settings are stored even when another engine renders, so set them always:
    # a worker that switches engines must still find a cheap, CPU-only setup.
    cycles = scene.cycles
    cycles.device = "CPU"
    cycles.samples = samples
    cycles.max_bounces = 2
    cycles.use_adaptive_sampling = False
    cycles.use_denoising = denoise
    if denoise:
        try:
            cycles.denoiser = "OPENIMAGEDENOISE"
        except TypeError:
            # Builds without OIDN (Debian's 3.4) offer no denoiser items at all; the stored
            # value stays OIDN, the default, and rendering fails until the worker turns
            # denoising off, which is exactly what this option is for.
            print("make_scene: this Blender has no OpenImageDenoise; denoiser left at default")
    if hasattr(cycles, "use_preview_denoising"):
        cycles.use_preview_denoising = False


def set_output(scene: bpy.types.Scene, args: argparse.Namespace) -> None:
    render = scene.render
    render.resolution_x = render.resolution_y = args.size
    render.resolution_percentage = 100
    render.use_persistent_data = False
    render.filepath = args.filepath
    render.use_file_extension = not args.no_file_extension
    settings = render.image_settings
    if hasattr(settings, "media_type"):  # 5.0: choose image or video before the format
        settings.media_type = "VIDEO" if args.format == "FFMPEG" else "IMAGE"
    settings.file_format = args.format
    if args.format == "FFMPEG":
        render.ffmpeg.format = "MPEG4"
        render.ffmpeg.codec = "H264"
    elif args.format == "JPEG":
        settings.color_mode = "RGB"
    scene.frame_start, scene.frame_end = args.frames
    scene.frame_current = args.frames[0]


def save(args: argparse.Namespace, texture_image: bpy.types.Image | None) -> str:
    output = os.path.abspath(args.output)
    os.makedirs(os.path.dirname(output), exist_ok=True)
    bpy.context.preferences.filepaths.save_version = 0  # no OUT.blend1 from the second save
    bpy.ops.wm.save_as_mainfile(filepath=output, compress=args.compress)
    if texture_image is not None:
        texture_image.filepath = bpy.path.relpath(texture_image.filepath_raw)
        bpy.ops.wm.save_mainfile(filepath=output, compress=args.compress)
    return output


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    scene = new_scene()
    add_world(scene)
    obj, texture_image = add_object(args.texture)
    add_light_and_camera(scene, with_camera=not args.no_camera)
    if args.animated:
        animate(obj, *args.frames)
    set_engine(scene, args.engine, args.samples, args.denoise)
    set_output(scene, args)
    print(f"make_scene: saved {save(args, texture_image)}")


if __name__ == "__main__":
    try:
        main(sys.argv)
    except SystemExit:
        raise
    except Exception:
        traceback.print_exc()
        print("make_scene: failed", file=sys.stderr)
        sys.exit(1)
