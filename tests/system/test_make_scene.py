"""scripts/make_scene.py builds the scenes it promises, checked by rendering them in Blender.

Each scene is rendered with the plain command line a worker uses, and the failures some
options are meant to cause are pinned down with the exact text Blender 3.4.1 prints,
because the worker reports Blender's own error text to the artist.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from farmtools import require_blender
from PIL import Image

from framefarm.common.blendfile import read_blend_info

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "make_scene.py"

# Printed after loading a scene, before rendering it, so one Blender run does both.
INSPECT = """
import bpy, json
s = bpy.context.scene
c = s.cycles
print("INSPECT " + json.dumps(dict(
    engine=s.render.engine, device=c.device, samples=c.samples, denoise=c.use_denoising,
    has_oidn="OPENIMAGEDENOISE" in c.bl_rna.properties["denoiser"].enum_items.keys(),
    eevee_samples=s.eevee.taa_render_samples, camera=s.camera is not None,
    frames=[s.frame_start, s.frame_end], format=s.render.image_settings.file_format,
    size=[s.render.resolution_x, s.render.resolution_y, s.render.resolution_percentage],
    output=s.render.filepath, persistent=s.render.use_persistent_data,
    animated=bpy.data.objects["Subject"].animation_data is not None,
    images=[i.filepath for i in bpy.data.images])))
"""

VARIANTS: dict[str, list[str]] = {
    "default": [],
    "options": ["--size", "32", "--frames", "10-20", "--samples", "2", "--compress"],
    "denoise": ["--denoise"],
    "no_camera": ["--no-camera"],
    "texture": ["--texture", "{dir}/textures/checker.png"],
    "animated": ["--animated", "--frames", "1-5"],
    "OPEN_EXR": ["--format", "OPEN_EXR"],
    "JPEG": ["--format", "JPEG"],
    "FFMPEG": ["--format", "FFMPEG", "--frames", "1-3"],
    "BLENDER_EEVEE": ["--engine", "BLENDER_EEVEE", "--samples", "2"],
    "BLENDER_WORKBENCH": ["--engine", "BLENDER_WORKBENCH"],
}


def make_scene(blender: str, output: Path, *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [blender, "-b", "--factory-startup", "--python-exit-code", "1", "--python", str(SCRIPT),
         "--", "--output", str(output), *options],
        capture_output=True, text=True, timeout=120,
    )


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every variant, generated once and side by side (Blender start-up dominates)."""
    blender = require_blender()

    def build(name: str) -> Path:
        folder = tmp_path_factory.mktemp(name)
        options = [option.format(dir=folder) for option in VARIANTS[name]]
        result = make_scene(blender, folder / f"{name}.blend", *options)
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"make_scene: saved {folder / name}.blend" in result.stdout
        return folder / f"{name}.blend"

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        return dict(zip(VARIANTS, pool.map(build, VARIANTS), strict=True))


def render(blend: Path, out: Path, frames: str = "1", *, python: str = INSPECT):
    """Render like a worker does; returns (result, what the scene says about itself)."""
    result = subprocess.run(
        [require_blender(), "-b", str(blend), "--python-exit-code", "1", "--python-expr", python,
         "-o", str(out / "frame_####"), "-f", frames],
        capture_output=True, text=True, timeout=120, cwd=out.parent,
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("INSPECT ")]
    return result, json.loads(lines[0].removeprefix("INSPECT ")) if lines else {}


def test_default_scene(scenes, tmp_path: Path) -> None:
    result, info = render(scenes["default"], tmp_path / "out")
    assert result.returncode == 0, result.stdout + result.stderr
    assert info == {
        "engine": "CYCLES", "device": "CPU", "samples": 4, "denoise": False,
        "has_oidn": info["has_oidn"], "eevee_samples": info["eevee_samples"], "camera": True,
        "frames": [1, 250], "format": "PNG", "size": [48, 48, 100], "output": "//",
        "persistent": False, "animated": False, "images": [],
    }
    with Image.open(tmp_path / "out" / "frame_0001.png") as image:
        assert image.size == (48, 48)
    assert read_blend_info(scenes["default"]).compression == "none"


def test_size_frames_samples_compress(scenes, tmp_path: Path) -> None:
    result, info = render(scenes["options"], tmp_path / "out")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (info["size"], info["frames"], info["samples"]) == ([32, 32, 100], [10, 20], 2)
    with Image.open(tmp_path / "out" / "frame_0001.png") as image:
        assert image.size == (32, 32)
    assert read_blend_info(scenes["options"]).compression == "zstd"


@pytest.mark.parametrize("fmt, pattern", [("OPEN_EXR", "frame_0001.exr"),
                                          ("JPEG", "frame_0001.jpg"),
                                          # a movie is named for the scene's whole range
                                          ("FFMPEG", "frame_0001-0003.mp4")])
def test_output_formats(scenes, tmp_path: Path, fmt: str, pattern: str) -> None:
    result, info = render(scenes[fmt], tmp_path / "out")
    assert result.returncode == 0, result.stdout + result.stderr
    assert info["format"] == fmt
    assert [p.name for p in (tmp_path / "out").iterdir()] == [pattern]


@pytest.mark.parametrize("engine", ["BLENDER_EEVEE", "BLENDER_WORKBENCH"])
def test_other_engines(scenes, tmp_path: Path, engine: str) -> None:
    # Headless, Blender 3.4 renders these through Mesa's surfaceless EGL, printing
    # "Managed to successfully fallback to surfaceless EGL rendering!".
    result, info = render(scenes[engine], tmp_path / "out")
    assert result.returncode == 0, result.stdout + result.stderr
    assert info["engine"] == engine
    if engine == "BLENDER_EEVEE":
        assert info["eevee_samples"] == 2
    assert (tmp_path / "out" / "frame_0001.png").is_file()


def test_denoise_fails_without_oidn_until_switched_off(scenes, tmp_path: Path) -> None:
    result, info = render(scenes["denoise"], tmp_path / "out")
    assert info["denoise"] is True
    if info["has_oidn"]:
        assert result.returncode == 0, result.stdout + result.stderr
    else:
        # Debian's Blender 3.4.1 (no OpenImageDenoise) exits with 1 and writes no frame;
        # stdout ends with the status line "... | Build without OpenImageDenoiser" and then
        #   Error: Build without OpenImageDenoiser
        # and stderr is exactly
        #   Build without OpenImageDenoiser
        #   No device available to denoise on
        assert result.returncode == 1
        assert "\nError: Build without OpenImageDenoiser\n" in result.stdout
        assert result.stderr == (
            "Build without OpenImageDenoiser\nNo device available to denoise on\n"
        )
        assert not (tmp_path / "out").exists()
    # What the worker does: switch denoising off before rendering.
    switch_off = INSPECT + "\nbpy.context.scene.cycles.use_denoising = False\n"
    result, _ = render(scenes["denoise"], tmp_path / "off", python=switch_off)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "off" / "frame_0001.png").is_file()


def test_no_camera_fails(scenes, tmp_path: Path) -> None:
    result, info = render(scenes["no_camera"], tmp_path / "out")
    assert info["camera"] is False
    # Blender 3.4.1 exits with 1, writes nothing, prints nothing on stderr, and stdout is:
    #   Blender 3.4.1
    #   Read blend: /path/to/no_camera.blend
    #   Error: Cannot render, no camera
    #   (empty line)
    #   Blender quit
    assert result.returncode == 1
    assert "\nError: Cannot render, no camera\n" in result.stdout
    assert result.stderr == ""
    assert not (tmp_path / "out").exists()


def test_texture_is_an_external_relative_file(scenes, tmp_path: Path) -> None:
    from blender_asset_tracer import blendfile, trace

    blend = scenes["texture"]
    try:
        usages = list(trace.deps(blend))
    finally:
        blendfile.close_all_cached()
    assert [bytes(u.asset_path) for u in usages] == [b"//textures/checker.png"]
    assert usages[0].abspath == blend.parent / "textures" / "checker.png"
    # Moved together with its texture, the scene still finds it (it is relative).
    moved = tmp_path / "moved"
    shutil.copytree(blend.parent, moved)
    result, info = render(moved / blend.name, tmp_path / "out")
    assert result.returncode == 0, result.stdout + result.stderr
    assert info["images"] == ["//textures/checker.png"]
    with Image.open(tmp_path / "out" / "frame_0001.png") as image:
        rgb = image.convert("RGB").tobytes()
    pixels = zip(rgb[0::3], rgb[1::3], rgb[2::3], strict=True)
    assert any(b > r + 60 and b > g + 30 for r, g, b in pixels), "no blue texture in the frame"


def test_animated_frames_differ_and_static_ones_do_not(scenes, tmp_path: Path) -> None:
    def frames(name: str) -> tuple[bytes, bytes]:
        out = tmp_path / name
        result, _ = render(scenes[name], out, frames="1,4")
        assert result.returncode == 0, result.stdout + result.stderr
        with Image.open(out / "frame_0001.png") as one, Image.open(out / "frame_0004.png") as four:
            return one.tobytes(), four.tobytes()

    first, later = frames("animated")
    assert first != later
    first, later = frames("default")
    assert first == later


@pytest.mark.parametrize("options, message", [
    (["--frames", "9-3"], "frames must be 0 <= A <= B, not '9-3'"),
    (["--engine", "LUXCORE"], "argument --engine: invalid choice: 'LUXCORE'"),
    (["--size", "0"], "--size and --samples must be 1 or more"),
])
def test_bad_arguments_exit_2(tmp_path: Path, options: list[str], message: str) -> None:
    result = make_scene(require_blender(), tmp_path / "x.blend", *options)
    assert result.returncode == 2
    assert message in result.stderr
    assert not (tmp_path / "x.blend").exists()


def test_errors_exit_1(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    result = make_scene(require_blender(), tmp_path / "a-file" / "x.blend")
    assert result.returncode == 1
    assert "make_scene: failed" in result.stderr
