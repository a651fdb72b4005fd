"""A scene that is slow to load and quick to render, for bench/overhead.py.

Run inside Blender (3.4 up to 5.0), like scripts/make_scene.py:

    blender -b --factory-startup --python-exit-code 1 --python bench/heavy_scene.py -- \\
        --output OUT.blend [--grid 800] [--size 128] [--samples 8] [--frames 1-40]

One finely subdivided grid (`--grid` squared quads: 800 makes a .blend of 85 MB, 1200 one of
190 MB), turning over the frames, a camera, a sun and a world. Loading the
file and building its geometry cost seconds; each frame, at a small size and few samples,
under a second: the case where a farm that loads the scene once per part loses most.
"""
from __future__ import annotations

import argparse
import math
import sys

import bpy


def main() -> None:
    argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else []
    ap = argparse.ArgumentParser()
    ap.add_argument("--output", required=True)
    ap.add_argument("--grid", type=int, default=800)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--frames", default="1-40")
    args = ap.parse_args(argv)
    first, last = (int(x) for x in args.frames.split("-"))

    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.samples = args.samples
    if hasattr(scene.cycles, "use_adaptive_sampling"):
        scene.cycles.use_adaptive_sampling = False
    scene.cycles.use_denoising = False
    scene.render.resolution_x = scene.render.resolution_y = args.size
    scene.render.resolution_percentage = 100
    scene.render.image_settings.file_format = "PNG"
    scene.frame_start, scene.frame_end = first, last

    bpy.ops.mesh.primitive_grid_add(x_subdivisions=args.grid, y_subdivisions=args.grid, size=4)
    grid = bpy.context.active_object
    grid.rotation_euler = (0.6, 0.0, 0.0)
    grid.keyframe_insert("rotation_euler", frame=first)
    grid.rotation_euler = (0.6, 0.0, math.pi / 2)
    grid.keyframe_insert("rotation_euler", frame=last)

    bpy.ops.object.camera_add(location=(0.0, -6.0, 3.0), rotation=(math.radians(65), 0.0, 0.0))
    scene.camera = bpy.context.active_object
    bpy.ops.object.light_add(type="SUN", location=(0.0, 0.0, 5.0))
    world = bpy.data.worlds.new("World")
    world.color = (0.2, 0.2, 0.25)
    scene.world = world
    bpy.ops.wm.save_as_mainfile(filepath=args.output)
    print(f"heavy_scene: saved {args.output}")


main()
