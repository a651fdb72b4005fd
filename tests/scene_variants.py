"""Blender script: turn a scene of scripts/make_scene.py into one of the real-world cases of
issue 15, then save it under --output (relative paths kept relative to the new file).

    blender -b scene.blend --python tests/scene_variants.py -- --variant missing-cache --output x.blend

Variants:
  missing-cache   a particle system whose point cache is on disk (blendcache_NAME/ next to the
                  .blend), never baked, so the cache files do not exist: Blender renders without
                  them (and writes them as it simulates)
"""
from __future__ import annotations

import argparse
import sys

import bpy


def missing_cache() -> None:
    obj = next(o for o in bpy.context.scene.objects if o.type == "MESH")
    modifier = obj.modifiers.new("Particles", "PARTICLE_SYSTEM")
    cache = modifier.particle_system.point_cache
    cache.use_disk_cache = True
    cache.name = "farmcache"


VARIANTS = {"missing-cache": missing_cache}


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="scene_variants.py")
    parser.add_argument("--variant", choices=sorted(VARIANTS), required=True)
    parser.add_argument("--output", required=True)
    args = parser.parse_args(argv)
    VARIANTS[args.variant]()
    bpy.ops.wm.save_as_mainfile(filepath=args.output, relative_remap=True)


main(sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else [])
