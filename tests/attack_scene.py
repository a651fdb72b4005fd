"""Scenes an attacker would send to a farm, made with the real Blender for the security tests.

Run inside Blender 3.4 or later:

    blender -b --factory-startup --python-exit-code 1 --python tests/attack_scene.py -- \\
        --output OUT.blend [--image PATH] [--colour R,G,B] [--file-output //NAME_####] \\
        [--samples N] [--subdivide LEVELS]

The frame is one flat colour, so a test reads what the scene saw from any pixel: an
orthographic camera looks at a plane that fills it, lit by nothing but its own emission,
with the Standard view transform (no filmic curve), so 1.0 renders as 255. With `--image`
the emission is that image's colour; an image Blender cannot read renders magenta
(255, 0, 255), which is how the tests see that a path was out of reach. The path is stored
as given: absolute, or `//..` relative to the saved .blend. `--file-output` adds a
compositor File Output node writing the render to that path (Blender's `//` is the
scene's folder): how a scene tries to write where it should not. `--samples` makes a
frame slow and `--subdivide` makes it need a lot of memory, for the limits' tests.
"""
from __future__ import annotations

import argparse
import sys
import traceback

import bpy


def parse_args(argv: list[str]) -> argparse.Namespace:
    argv = argv[argv.index("--") + 1:] if "--" in argv else []
    parser = argparse.ArgumentParser(prog="attack_scene.py")
    parser.add_argument("--output", required=True)
    parser.add_argument("--image", default=None, help="the image the plane shows, path stored as given")
    parser.add_argument("--colour", default="0,1,0", help="R,G,B from 0 to 1, without --image")
    parser.add_argument("--file-output", default=None, help="a compositor File Output path, e.g. //tex_####")
    parser.add_argument("--size", type=int, default=16)
    parser.add_argument("--samples", type=int, default=1, help="many make a slow frame")
    parser.add_argument("--subdivide", type=int, default=0, help="subdivision levels of the plane: 9 needs GiBs")
    return parser.parse_args(argv)


def main(args: argparse.Namespace) -> None:
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = args.samples
    # Off, or a flat colour converges after Cycles' first few samples and `--samples` makes no
    # frame slow (the frame-time test then depends on how busy the machine is).
    scene.cycles.use_adaptive_sampling = False
    scene.cycles.use_denoising = False
    scene.view_settings.view_transform = "Standard"
    scene.render.resolution_x = scene.render.resolution_y = args.size
    scene.render.resolution_percentage = 100
    scene.render.image_settings.file_format = "PNG"
    scene.render.image_settings.color_mode = "RGB"
    scene.frame_start = scene.frame_end = 1

    world = bpy.data.worlds.new("World")
    world.use_nodes = True
    world.node_tree.nodes["Background"].inputs["Strength"].default_value = 0.0
    scene.world = world

    bpy.ops.mesh.primitive_plane_add(size=4.0)
    plane = bpy.context.active_object
    material = bpy.data.materials.new("Flat")
    material.use_nodes = True
    tree = material.node_tree
    tree.nodes.clear()
    emission = tree.nodes.new("ShaderNodeEmission")
    output = tree.nodes.new("ShaderNodeOutputMaterial")
    tree.links.new(emission.outputs["Emission"], output.inputs["Surface"])
    if args.image:
        image = bpy.data.images.new("Target", 4, 4)
        image.source = "FILE"
        image.filepath = args.image  # stored as given; Blender reads it only when rendering
        node = tree.nodes.new("ShaderNodeTexImage")
        node.image = image
        node.interpolation = "Closest"
        tree.links.new(node.outputs["Color"], emission.inputs["Color"])
    else:
        r, g, b = (float(c) for c in args.colour.split(","))
        emission.inputs["Color"].default_value = (r, g, b, 1.0)
    plane.data.materials.append(material)
    if args.subdivide:
        modifier = plane.modifiers.new("Heavy", "SUBSURF")
        modifier.subdivision_type = "SIMPLE"
        modifier.levels = 0
        modifier.render_levels = args.subdivide

    camera = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
    camera.data.type = "ORTHO"
    camera.data.ortho_scale = 2.0
    camera.location = (0.0, 0.0, 5.0)
    scene.collection.objects.link(camera)
    scene.camera = camera

    if args.file_output:
        scene.use_nodes = True
        nodes = scene.node_tree.nodes
        layers = nodes.get("Render Layers") or nodes.new("CompositorNodeRLayers")
        if not any(n.type == "COMPOSITE" for n in nodes):
            scene.node_tree.links.new(layers.outputs["Image"], nodes.new("CompositorNodeComposite").inputs[0])
        writer = nodes.new("CompositorNodeOutputFile")
        folder, _, name = args.file_output.rpartition("/")
        writer.base_path = folder + "/"
        writer.file_slots[0].path = name
        writer.format.file_format = "PNG"
        writer.format.color_mode = "RGB"
        scene.node_tree.links.new(layers.outputs["Image"], writer.inputs[0])

    bpy.context.preferences.filepaths.save_version = 0
    bpy.ops.wm.save_as_mainfile(filepath=args.output, relative_remap=False)  # paths stay as given
    print(f"attack_scene: saved {args.output}")


if __name__ == "__main__":
    try:
        main(parse_args(sys.argv))
    except Exception:
        traceback.print_exc()
        sys.exit(1)
