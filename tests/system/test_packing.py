"""pack_scene against real .blend files written by Blender 3.4.

Every scene is built by real Blender (one run builds them all, to keep the suite fast),
packed, then unpacked from the manifest alone into a fresh folder and opened again in
Blender, which must find every image and library inside that folder: that is exactly what
a worker that has none of the artist's folders will do.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from farmtools import require_blender

from framefarm.client.packing import OUTSIDE_PROJECT, PackError, PackedScene, pack_scene

REPO = Path(__file__).resolve().parents[2]
MAKE_SCENE = REPO / "scripts" / "make_scene.py"

# Runs inside Blender: builds the scenes the tests pack. Paths are stored exactly as given
# (relative_remap=False), so '//../' and absolute references survive the save as written.
BUILD_SCENES = r'''
import os, sys, bpy
root = sys.argv[sys.argv.index("--") + 1]

def reset():
    bpy.ops.wm.read_factory_settings(use_empty=True)

def textured(name, stored_path):
    mesh = bpy.data.meshes.new(name)
    obj = bpy.data.objects.new(name, mesh)
    bpy.context.scene.collection.objects.link(obj)
    material = bpy.data.materials.new(name)
    material.use_nodes = True
    image = bpy.data.images.new(name, 4, 4)
    image.source = "FILE"
    image.filepath = stored_path
    material.node_tree.nodes.new("ShaderNodeTexImage").image = image
    mesh.materials.append(material)

def save(relpath, compress=False):
    path = os.path.join(root, relpath)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    bpy.ops.wm.save_as_mainfile(filepath=path, compress=compress, relative_remap=False)

def link_scene(shot, library):
    reset()
    save(shot)  # saved first, so the library path can be stored relative to it
    with bpy.data.libraries.load(os.path.join(root, library), link=True,
                                 relative=True) as (src, dst):
        dst.objects = ["LibObj"]
    bpy.context.scene.collection.objects.link(dst.objects[0])
    bpy.ops.wm.save_mainfile()

reset()
textured("Abs", os.path.join(root, "ext", "abs_tex.png"))
textured("Up", "//../ext/up_tex.png")
save("outside/shot.blend")
save("outside_zstd/shot.blend", compress=True)

reset()
textured("LibObj", "//textures/lib_tex.png")
save("linked/libs/lib.blend")
save("shared/lib.blend")
link_scene("linked/shot.blend", "linked/libs/lib.blend")
link_scene("linked_outside/shot.blend", "shared/lib.blend")

reset()
textured("Wood", "//textures/wood.png")
save("missing/shot.blend")
'''

# Runs inside Blender on an unpacked job: where does every reference resolve?
INSPECT = r'''
import json, os, bpy
def where(path, library):
    full = os.path.normpath(bpy.path.abspath(path, library=library))
    return {"path": path, "abspath": full, "exists": os.path.exists(full)}
print("RESULT:" + json.dumps({
    "images": {i.name: where(i.filepath, i.library) for i in bpy.data.images
               if i.source == "FILE"},
    "libraries": {l.name: where(l.filepath, None) for l in bpy.data.libraries},
    # ID.is_missing is newer than 3.4; a placeholder for a lost linked mesh has no data.
    "missing_ids": [o.name for o in bpy.data.objects
                    if getattr(o, "is_missing", o.library is not None and o.data is None)],
}))
'''


def run_blender(*args: str) -> str:
    command = [require_blender(), "-b", "--factory-startup", "--python-exit-code", "1", *args]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"{command} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def png_bytes(rgb: tuple[int, int, int]) -> bytes:
    """A 2x2 PNG, so the tests need nothing but zlib to make textures."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    rows = b"".join(b"\x00" + bytes(rgb) * 2 for _ in range(2))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    """Contents and mtime of every file: the artist's files must stay untouched."""
    return {p.relative_to(root).as_posix(): (hashlib.sha256(p.read_bytes()).digest(),
                                             p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


def unpack(packed: PackedScene, dest: Path) -> Path:
    """What a worker does: the job folder rebuilt from the manifest alone."""
    manifest = packed.manifest()
    assert set(manifest) == set(packed.files)
    for relpath, digest in manifest.items():
        assert hashlib.sha256(packed.files[relpath].read_bytes()).hexdigest() == digest
        target = dest / relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(packed.files[relpath], target)
    return dest / packed.main


def inspect(main: Path) -> dict:
    out = run_blender(str(main), "--python-expr", INSPECT)
    line = next(line for line in out.splitlines() if line.startswith("RESULT:"))
    return json.loads(line[len("RESULT:"):])


def assert_all_resolve_inside(info: dict, folder: Path, images: int, libraries: int) -> None:
    assert len(info["images"]) == images, info
    assert len(info["libraries"]) == libraries, info
    assert info["missing_ids"] == [], info
    for ref in [*info["images"].values(), *info["libraries"].values()]:
        assert ref["exists"], ref
        assert Path(ref["abspath"]).is_relative_to(folder), ref


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """All scenes, built by one Blender run; textures written as plain PNG files."""
    root = tmp_path_factory.mktemp("scenes")
    for relpath, rgb in (("ext/abs_tex.png", (200, 0, 0)), ("ext/up_tex.png", (0, 200, 0)),
                         ("linked/libs/textures/lib_tex.png", (0, 0, 200)),
                         ("shared/textures/lib_tex.png", (9, 9, 9))):
        (root / relpath).parent.mkdir(parents=True, exist_ok=True)
        (root / relpath).write_bytes(png_bytes(rgb))
    script = root / "build_scenes.py"
    script.write_text(BUILD_SCENES)
    run_blender("--python", str(script), "--", str(root))
    script.unlink()
    return root


def test_texture_inside_project_keeps_its_path(tmp_path: Path) -> None:
    """(a) shot.blend + textures/tex.png: nothing rewritten, nothing copied."""
    project = tmp_path / "project"
    run_blender("--python", str(MAKE_SCENE), "--", "--output", str(project / "shot.blend"),
                "--texture", str(project / "textures" / "tex.png"))
    before = snapshot(project)

    packed = pack_scene(project / "shot.blend", tmp_path / "work")

    assert packed.main == "shot.blend"
    assert packed.missing == []
    assert packed.files == {"shot.blend": project / "shot.blend",
                            "textures/tex.png": project / "textures" / "tex.png"}
    assert packed.manifest() == {
        rel: hashlib.sha256((project / rel).read_bytes()).hexdigest()
        for rel in ("shot.blend", "textures/tex.png")}
    assert list((tmp_path / "work").iterdir()) == []
    assert snapshot(project) == before
    main = unpack(packed, tmp_path / "job")
    assert_all_resolve_inside(inspect(main), tmp_path / "job", images=1, libraries=0)


@pytest.mark.parametrize("variant", ["outside", "outside_zstd"])
def test_textures_outside_project_are_rewritten(scenes: Path, tmp_path: Path,
                                                variant: str) -> None:
    """(b) an absolute path and a //../ path: both land under _outside_project, and only a
    copy of shot.blend is rewritten (zstd-compressed main file included)."""
    before = snapshot(scenes)
    work = tmp_path / "work"

    packed = pack_scene(scenes / variant / "shot.blend", work)

    assert packed.missing == []
    assert packed.main == "shot.blend"
    assert packed.files["shot.blend"] == work / "shot.blend"
    textures = {rel: path for rel, path in packed.files.items() if rel != "shot.blend"}
    assert sorted(textures.values()) == [scenes / "ext" / "abs_tex.png",
                                         scenes / "ext" / "up_tex.png"]
    assert all(rel.startswith(OUTSIDE_PROJECT + "/") for rel in textures)
    assert snapshot(scenes) == before
    main = unpack(packed, tmp_path / "job")
    info = inspect(main)
    assert_all_resolve_inside(info, tmp_path / "job", images=2, libraries=0)
    assert all(ref["path"].startswith("//") for ref in info["images"].values())


@pytest.mark.parametrize("variant", ["linked", "linked_outside"])
def test_linked_library_and_its_texture(scenes: Path, tmp_path: Path, variant: str) -> None:
    """(c) shot.blend links an object from lib.blend, whose material uses a texture: all
    three travel, inside the project or (for a //../ library) under _outside_project."""
    before = snapshot(scenes)

    packed = pack_scene(scenes / variant / "shot.blend", tmp_path / "work")

    assert packed.missing == []
    assert len(packed.files) == 3
    names = sorted(Path(rel).name for rel in packed.files)
    assert names == ["lib.blend", "lib_tex.png", "shot.blend"]
    if variant == "linked":
        assert set(packed.files) == {"shot.blend", "libs/lib.blend",
                                     "libs/textures/lib_tex.png"}
        assert not any((tmp_path / "work").iterdir())
    assert snapshot(scenes) == before
    main = unpack(packed, tmp_path / "job")
    assert_all_resolve_inside(inspect(main), tmp_path / "job", images=1, libraries=1)


def test_missing_texture_is_listed(scenes: Path, tmp_path: Path) -> None:
    """(d) the caller decides whether a missing texture is fatal; it must be named."""
    packed = pack_scene(scenes / "missing" / "shot.blend", tmp_path / "work")

    assert packed.missing == ['//textures/wood.png (used by image "Wood" in shot.blend)']
    assert set(packed.files) == {"shot.blend"}


def test_not_a_blend_or_absent_is_a_pack_error(tmp_path: Path) -> None:
    """(e) no Blender needed: refused by the header check before BAT sees the file."""
    cases = {  # file -> (its contents, what the refusal says)
        "image.blend": (png_bytes((1, 2, 3)), r"not a \.blend file \(it starts with .*a PNG image\)"),
        "empty.blend": (b"", "the file is empty"),
        "text.blend": (b"BLENDE", r"the \.blend file is truncated: it ends inside the file header"),
        "gzipped.blend": (gzip.compress(b"not a blend at all"), r"not a \.blend file \(it is gzip-compressed"),
    }
    for name, (data, message) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(PackError, match=f"cannot pack .*{name}: {message}"):
            pack_scene(tmp_path / name, tmp_path / "work")
    (tmp_path / "cut.blend").write_bytes(b"BLENDER-v304" + b"\0" * 30)
    with pytest.raises(PackError, match="cut.blend"):  # a header alone: BAT refuses it
        pack_scene(tmp_path / "cut.blend", tmp_path / "work")
    with pytest.raises(PackError, match="not found"):
        pack_scene(tmp_path / "nowhere" / "shot.blend", tmp_path / "work")
    with pytest.raises(PackError, match="not a file"):
        pack_scene(tmp_path, tmp_path / "work")


def test_zstd_scene_without_zstandard_module(scenes: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Plain Pythons may lack 'zstandard' (Blender bundles it): say so, not a traceback."""
    monkeypatch.setitem(sys.modules, "zstandard", None)  # makes 'import zstandard' fail
    with pytest.raises(PackError, match="zstandard"):
        pack_scene(scenes / "outside_zstd" / "shot.blend", tmp_path / "work")


def test_workdir_must_not_be_the_project(scenes: Path, tmp_path: Path) -> None:
    """A rewritten copy must never land on the artist's own file."""
    project = tmp_path / "outside"
    shutil.copytree(scenes / "outside", project)
    before = snapshot(project)
    with pytest.raises(PackError, match="overwrite"):
        pack_scene(project / "shot.blend", project)
    assert snapshot(project) == before

