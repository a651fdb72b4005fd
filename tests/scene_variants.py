"""Blender script: turn a scene of scripts/make_scene.py into one of the real-world cases of
issue 15, then save it under --output (relative paths kept relative to the new file).

    blender -b scene.blend --python tests/scene_variants.py -- --variant missing-cache --output x.blend

Variants:
  video-audio     output set to an MPEG-4/H.264 movie at 25 fps with AAC sound, and a sound strip
                  in the sequencer playing the WAV file given with --sound (a path relative to
                  the new file, as an artist's would be)
  linked          the subject linked from a library that links its material from a second one:
                  ../lib/level1.blend (as //../lib/level1.blend, climbing a folder) and ../lib/level2.blend
  caches          a particle system baked to its disk cache (blendcache_NAME/ next to the .blend)
  openvdb         a volume object reading an OpenVDB cache on disk, cache/smoke_0001.vdb (the file
                  given with --vdb: Debian's Blender 3.4 cannot bake a smoke domain in the
                  background, mantaflow fails, so the test writes the grid with python3-openvdb)
  udim            the subject textured by a UDIM set, textures/tile.<UDIM>.png (tiles 1001 and 1002)
  image-sequence  the subject textured by an image sequence, seq/img_0001.png..img_0004.png
  sequencer       the render goes through the sequencer: an image strip of strips/plate.png over the scene
  font            a text object in a font file next to the .blend (fonts/font.ttf, copied from --font)
  view-layers     two view layers, "Main" (the scene as made, with its Z and Normal passes) and
                  "Tinted" (every material overridden by a red one, with its Mist pass)
  marker-cameras  a second camera, "Close" (twice the focal length), and timeline markers binding
                  "Camera" to frame 1 and "Close" to frame 3: frames 1-2 see the subject whole,
                  frames 3 and later close up
  missing-cache   a particle system whose point cache is on disk (blendcache_NAME/ next to the
                  .blend), never baked, so the cache files do not exist: Blender renders without
                  them (and writes them as it simulates)
"""
from __future__ import annotations

import argparse
import os
import sys

import bpy

ARGS: argparse.Namespace  # main's, for the variants that write files beside the output


def missing_cache() -> None:
    obj = next(o for o in bpy.context.scene.objects if o.type == "MESH")
    modifier = obj.modifiers.new("Particles", "PARTICLE_SYSTEM")
    cache = modifier.particle_system.point_cache
    cache.use_disk_cache = True
    cache.name = "farmcache"


def video_audio(sound: str) -> None:
    scene = bpy.context.scene
    render = scene.render
    render.image_settings.file_format = "FFMPEG"
    render.ffmpeg.format = "MPEG4"
    render.ffmpeg.codec = "H264"
    render.ffmpeg.constant_rate_factor = "MEDIUM"
    render.ffmpeg.audio_codec = "AAC"
    render.fps, render.fps_base = 25, 1.0
    edit = scene.sequence_editor_create()
    # Saved where it goes first, so the strip's path is relative to it as an artist's would be (the
    # strip keeps its own copy of the folder, which making paths relative afterwards leaves alone).
    _folder()
    bpy.ops.wm.save_as_mainfile(filepath=os.path.abspath(ARGS.output), relative_remap=True)
    edit.sequences.new_sound("sound", bpy.path.relpath(os.path.abspath(sound)), 1, scene.frame_start)


def view_layers() -> None:
    scene = bpy.context.scene
    main = scene.view_layers[0]
    main.name = "Main"
    main.use_pass_z = main.use_pass_normal = True
    tinted = scene.view_layers.new("Tinted")
    tinted.use_pass_mist = True
    red = bpy.data.materials.new("Red")
    red.diffuse_color = (0.9, 0.05, 0.05, 1.0)
    tinted.material_override = red


def marker_cameras() -> None:
    scene = bpy.context.scene
    wide = scene.camera
    close = bpy.data.objects.new("Close", wide.data.copy())
    close.data.lens = wide.data.lens * 2
    close.location, close.rotation_euler = wide.location.copy(), wide.rotation_euler.copy()
    scene.collection.objects.link(close)
    for frame, camera in ((1, wide), (3, close)):
        scene.timeline_markers.new(f"F_{frame:02d}", frame=frame).camera = camera


def _folder(*parts: str) -> str:
    folder = os.path.join(os.path.dirname(os.path.abspath(ARGS.output)), *parts)
    os.makedirs(folder, exist_ok=True)
    return folder


def _subject() -> bpy.types.Object:
    return next(o for o in bpy.context.scene.objects if o.type == "MESH")


def _image_file(path: str, color: tuple[float, float, float, float], size: int = 16) -> None:
    img = bpy.data.images.new(os.path.basename(path), size, size)
    img.pixels = list(color) * (size * size)
    img.filepath_raw = path
    img.file_format = "PNG"
    img.save()
    bpy.data.images.remove(img)


def _textured(image: bpy.types.Image) -> bpy.types.ImageTexture:
    mat = bpy.data.materials.new("Textured")
    mat.use_nodes = True
    tex = mat.node_tree.nodes.new("ShaderNodeTexImage")
    tex.image = image
    bsdf = next(n for n in mat.node_tree.nodes if n.type == "BSDF_PRINCIPLED")
    mat.node_tree.links.new(tex.outputs["Color"], bsdf.inputs["Base Color"])
    subject = _subject()
    subject.data.materials.clear()
    subject.data.materials.append(mat)
    return tex


def linked() -> None:
    lib = _folder("..", "lib")
    level2, level1 = os.path.join(lib, "level2.blend"), os.path.join(lib, "level1.blend")
    subject = _subject()
    mat = bpy.data.materials.new("LibraryRed")
    mat.diffuse_color = (0.8, 0.1, 0.1, 1.0)
    bpy.data.libraries.write(level2, {mat}, fake_user=True)
    # level1: a mesh using level2's material, linked by a path relative to level1 itself.
    bpy.data.materials.remove(mat)
    with bpy.data.libraries.load(level2, link=True) as (src, dst):
        dst.materials = ["LibraryRed"]
    mesh = subject.data.copy()
    mesh.name = "LibraryMesh"
    mesh.materials.clear()
    mesh.materials.append(dst.materials[0])
    bpy.data.libraries.write(level1, {mesh}, path_remap="RELATIVE", fake_user=True)
    bpy.data.meshes.remove(mesh)
    for library in list(bpy.data.libraries):
        bpy.data.libraries.remove(library)
    # The shot: its subject's mesh linked from level1, two levels of libraries in all.
    with bpy.data.libraries.load(level1, link=True) as (src, dst):
        dst.meshes = ["LibraryMesh"]
    subject.data = dst.meshes[0]


def caches() -> None:
    scene = bpy.context.scene
    subject = _subject()
    modifier = subject.modifiers.new("Particles", "PARTICLE_SYSTEM")
    settings = modifier.particle_system.settings
    settings.count, settings.frame_start, settings.frame_end, settings.lifetime = 30, 1, 2, 50
    cache = modifier.particle_system.point_cache
    cache.use_disk_cache = True
    cache.name = "farmcache"
    cache.frame_start, cache.frame_end = 1, 2
    _folder()  # the disk cache goes next to the saved file, so save it there first
    bpy.ops.wm.save_as_mainfile(filepath=os.path.abspath(ARGS.output), relative_remap=True)
    with bpy.context.temp_override(point_cache=cache):
        bpy.ops.ptcache.bake_all(bake=True)
    scene.frame_set(1)


def openvdb(vdb: str) -> None:
    import shutil

    cached = os.path.join(_folder("cache"), "smoke_0001.vdb")
    shutil.copyfile(vdb, cached)
    volume = bpy.data.volumes.new("Smoke")
    volume.filepath = cached
    mat = bpy.data.materials.new("SmokeMaterial")
    mat.use_nodes = True
    nodes = mat.node_tree.nodes
    for node in list(nodes):
        if node.type != "OUTPUT_MATERIAL":
            nodes.remove(node)
    shader = nodes.new("ShaderNodeVolumePrincipled")
    shader.inputs["Density"].default_value = 5.0
    mat.node_tree.links.new(shader.outputs["Volume"], nodes["Material Output"].inputs["Volume"])
    volume.materials.append(mat)
    obj = bpy.data.objects.new("Smoke", volume)
    obj.location = _subject().location
    bpy.context.scene.collection.objects.link(obj)


def udim() -> None:
    folder = _folder("textures")
    for tile, color in ((1001, (0.9, 0.2, 0.1, 1.0)), (1002, (0.1, 0.2, 0.9, 1.0))):
        _image_file(os.path.join(folder, f"tile.{tile}.png"), color)
    image = bpy.data.images.load(os.path.join(folder, "tile.1001.png"))
    image.source = "TILED"
    image.filepath = os.path.join(folder, "tile.<UDIM>.png")
    image.tiles.new(1002)
    image.reload()
    _textured(image)


def image_sequence() -> None:
    folder = _folder("seq")
    for frame in range(1, 5):
        _image_file(os.path.join(folder, f"img_{frame:04d}.png"), (0.2 * frame, 0.5, 1.0 - 0.2 * frame, 1.0))
    image = bpy.data.images.load(os.path.join(folder, "img_0001.png"))
    image.source = "SEQUENCE"
    tex = _textured(image)
    tex.image_user.frame_duration = 4
    tex.image_user.frame_start = 1
    tex.image_user.use_auto_refresh = True


def sequencer() -> None:
    folder = _folder("strips")
    _image_file(os.path.join(folder, "plate.png"), (0.1, 0.8, 0.3, 1.0), 64)
    scene = bpy.context.scene
    edit = scene.sequence_editor_create()
    edit.sequences.new_image("plate", os.path.join(folder, "plate.png"), 1, scene.frame_start)
    edit.sequences_all["plate"].frame_final_duration = scene.frame_end - scene.frame_start + 1
    scene.render.use_sequencer = True


def font() -> None:
    folder = _folder("fonts")
    import shutil
    shutil.copyfile(ARGS.font, os.path.join(folder, "font.ttf"))
    vfont = bpy.data.fonts.load(os.path.join(folder, "font.ttf"))
    curve = bpy.data.curves.new("Title", "FONT")
    curve.body, curve.font, curve.size = "Fa", vfont, 1.5
    text = bpy.data.objects.new("Title", curve)
    text.location = (-1.0, -1.0, 1.2)
    bpy.context.scene.collection.objects.link(text)


# The variants that write files beside the output by absolute path (made relative once it is saved).
WRITE_FILES = {"linked", "udim", "image-sequence", "sequencer", "font", "openvdb"}
VARIANTS = {"view-layers": view_layers, "marker-cameras": marker_cameras, "missing-cache": missing_cache, "video-audio": video_audio, "linked": linked, "caches": caches,
            "openvdb": openvdb, "udim": udim, "image-sequence": image_sequence, "sequencer": sequencer, "font": font}


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="scene_variants.py")
    parser.add_argument("--variant", choices=sorted(VARIANTS), required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--sound", help="video-audio: the WAV file its sound strip plays")
    parser.add_argument("--font", help="font: the font file to copy next to the .blend")
    parser.add_argument("--vdb", help="openvdb: the OpenVDB file to cache next to the .blend")
    global ARGS
    args = ARGS = parser.parse_args(argv)
    VARIANTS[args.variant](*[a for a in (args.sound, args.vdb) if a])
    bpy.ops.wm.save_as_mainfile(filepath=os.path.abspath(args.output), relative_remap=True)
    if args.variant in WRITE_FILES:  # then every path made relative to it, as an artist's project's are
        bpy.ops.file.make_paths_relative()
        bpy.ops.wm.save_mainfile()


main(sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else [])
