"""Issue 12, item 3: frames land where a local render would have put them, every view layer and pass
of a multilayer OpenEXR is kept, and cameras bound to timeline markers switch per frame.

Each case is a scene made with the real Blender, rendered by plain Blender 3.4 as an artist runs it
(`blender -b scene.blend -f N`, which writes under the scene's own output path) and by the farm
through the CLI (`framefarm submit --wait --output DIR`): the farm's files under DIR have the same
names, relative to the .blend's folder, and the same pixels. One farm serves the module; scenes
are 32 px with one sample."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from framefarm.common import output_names

from farmtools import framefarm_cli, make_scene, require_blender, require_module
from test_real_world_scenes import same_pixels, variant

FRAME = 7


@pytest.fixture(scope="module")
def farm(module_cluster):
    module_cluster.add_gateway()
    module_cluster.add_worker()
    module_cluster.wait_registered(1)
    return module_cluster


def files_under(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def local_render(scene: Path, where: Path, *args: str) -> Path:
    """Plain Blender renders a copy of `scene` in `where`/proj/ (so a `//../` path stays inside
    `where`): `blender -b scene.blend ARGS`. Returns the copy's folder."""
    proj = where / "proj"
    proj.mkdir(parents=True)
    shutil.copy(scene, proj / "scene.blend")
    run = subprocess.run([require_blender(), "-b", str(proj / "scene.blend"), *args], capture_output=True,
                         text=True, timeout=240, cwd=where)
    assert run.returncode == 0 and "Saved:" in run.stdout, run.stdout[-2000:] + run.stderr[-2000:]
    return proj


def farm_render(farm, scene: Path, out: Path, *args: str) -> dict:
    """The farm renders `scene` through the CLI into `out`; the job as `submit --json` shows it."""
    import json

    res = framefarm_cli("submit", str(scene), *args, "--wait", "--output", str(out), "--json",
                        env=farm.client_env(), timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:] + farm.logs()
    job = dict(json.loads(res.stdout))
    assert job["folder"] == str(out.resolve())  # beside the job's own `output`, the naming pattern
    return job


# (output path, make_scene options, submit/-F options, the name Blender gives frame 7 relative to the .blend).
# More paths and every format against Blender's own frame_path, without rendering: below.
CASES = {
    "padding and folder": ("//render/shot010_####", [], [], "render/shot010_0007.png"),
    "# mid-name, no extension": ("//shot_##_v2", ["--format", "JPEG", "--no-file-extension"], [], "shot_07_v2"),
    "climbing folder": ("//../up/shot_###", [], [], "../up/shot_007.png"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_frames_are_named_as_a_local_render_names_them(farm, tmp_path: Path, case: str) -> None:
    path, options, submit, local_name = CASES[case]
    scene = make_scene(tmp_path / "scene" / "scene.blend", "--size", "32", "--samples", "1", "--frames", "1-8",
                       "--filepath", path, *options)
    proj = local_render(scene, tmp_path / "local", *(["-F", submit[1]] if submit else []), "-f", str(FRAME))
    local = files_under(proj.parent) - {"proj/scene.blend"}
    assert local == {f"proj/{local_name}".replace("proj/../", "")}, local  # where Blender itself wrote it
    job = farm_render(farm, scene, tmp_path / "farm", "--frames", str(FRAME), *submit)
    expected = local_name.replace("../", "")  # a zip entry never climbs out of the job's folder
    assert files_under(tmp_path / "farm") == {expected}
    assert output_names.entry_name(job["output"]["pattern"], FRAME) == expected
    assert job["output"]["multilayer"] == ("OPEN_EXR_MULTILAYER" in submit)
    if expected.endswith(".png"):
        same_pixels(tmp_path / "farm" / expected, (proj / local_name).resolve())


def test_an_absolute_output_path_keeps_its_file_name(farm, tmp_path: Path) -> None:
    """`/somewhere/abs_##`: Blender writes there; the farm's zip has the name only."""
    elsewhere = tmp_path / "elsewhere"
    scene = make_scene(tmp_path / "scene" / "scene.blend", "--size", "32", "--samples", "1", "--frames", "1-8",
                       "--filepath", f"{elsewhere}/abs_##")
    local_render(scene, tmp_path / "local", "-f", str(FRAME))
    assert files_under(elsewhere) == {"abs_07.png"}
    job = farm_render(farm, scene, tmp_path / "farm", "--frames", f"{FRAME}-{FRAME + 1}")
    assert job["output"] == {"pattern": "abs_##.png", "multilayer": False}
    assert files_under(tmp_path / "farm") == {"abs_07.png", "abs_08.png"}
    status = framefarm_cli("status", job["id"], env=farm.client_env())
    assert "frames named: abs_##.png" in status.stdout, status.stdout + status.stderr
    same_pixels(tmp_path / "farm" / "abs_07.png", elsewhere / "abs_07.png")


def exr_layers(path: Path) -> dict[str, object]:
    """Every channel of a multilayer OpenEXR by name ("Main.Combined", "Tinted.Mist.Z", ...), as arrays."""
    require_module("OpenEXR", "OpenEXR")
    import OpenEXR

    with OpenEXR.File(str(path)) as f:
        return {f"{part.name()}/{name}": channel.pixels.copy() for part in f.parts
                for name, channel in part.channels.items()}


@pytest.fixture(scope="module")
def layered(tmp_path_factory) -> Path:
    """A PNG scene with two view layers and their passes (tests/scene_variants.py view-layers)."""
    folder = tmp_path_factory.mktemp("layered")
    base = make_scene(folder / "base" / "scene.blend", "--size", "32", "--samples", "1", "--frames", "1-4",
                      "--filepath", "//layers/f_####")
    return variant(base, "view-layers", folder / "variant.blend")


def test_view_layers_and_passes_survive_in_multilayer_exr(farm, layered: Path, tmp_path: Path) -> None:
    """Two view layers with their passes in one OPEN_EXR_MULTILAYER frame: the farm's file holds the
    same layers, passes and pixels as Blender's own."""
    import numpy

    proj = local_render(layered, tmp_path / "local", "-F", "OPEN_EXR_MULTILAYER", "-f", "2")
    job = farm_render(farm, layered, tmp_path / "farm", "--frames", "2", "--format", "OPEN_EXR_MULTILAYER")
    assert job["output"] == {"pattern": "layers/f_####.exr", "multilayer": True}
    ours, blenders = exr_layers(tmp_path / "farm" / "layers" / "f_0002.exr"), exr_layers(proj / "layers" / "f_0002.exr")
    assert {"/Main.Combined", "/Main.Depth.Z", "/Main.Normal.X", "/Tinted.Combined", "/Tinted.Mist.Z"} <= set(blenders)
    assert set(ours) == set(blenders)
    for name, pixels in blenders.items():
        assert numpy.allclose(ours[name], pixels, rtol=1e-3, atol=2e-3, equal_nan=True), name
    assert not numpy.allclose(blenders["/Main.Combined"], blenders["/Tinted.Combined"], atol=0.05)  # two real layers


def test_several_view_layers_to_png_render_what_blender_writes(farm, layered: Path, tmp_path: Path) -> None:
    proj = local_render(layered, tmp_path / "local", "-f", "1")
    farm_render(farm, layered, tmp_path / "farm", "--frames", "1")
    assert files_under(tmp_path / "farm") == {"layers/f_0001.png"}
    same_pixels(tmp_path / "farm" / "layers" / "f_0001.png", proj / "layers" / "f_0001.png")


def test_cameras_bound_to_markers_switch_per_frame(farm, tmp_path: Path) -> None:
    """Markers bind "Camera" to frame 1 and "Close" to frame 3. The farm renders frames 2-5 as parts
    of one frame each, the first starting mid-range at frame 2, on one worker whose warm Blender
    renders part after part in one process: each frame has the camera plain Blender gives it."""
    base = make_scene(tmp_path / "base" / "scene.blend", "--size", "32", "--samples", "1", "--frames", "1-5",
                      "--filepath", "//cams/f_####")
    scene = variant(base, "marker-cameras", tmp_path / "variant.blend")
    proj = local_render(scene, tmp_path / "local", "-s", "2", "-e", "5", "-a")
    job = farm_render(farm, scene, tmp_path / "farm", "--frames", "2-5", "--chunk", "1")
    log = farm.workers[0].log_path.read_text(errors="replace")
    assert log.count(f"warm Blender process(es) for job {job['id']}") == 1, log[-3000:]  # one process, 4 parts
    assert f"replacing the warm Blender of job {job['id']}" not in log
    names = [f"cams/f_{frame:04d}.png" for frame in range(2, 6)]
    assert files_under(tmp_path / "farm") == set(names)
    for name in names:
        same_pixels(tmp_path / "farm" / name, proj / name)
    with pytest.raises(AssertionError):  # the switch is visible: frame 2 is wide, frame 3 close up
        same_pixels(proj / names[0], proj / names[1])


# Blender saves one scene per (output path, format, File Extensions) and says where it would write
# frame 7 (`render.frame_path`) and whether the format is a movie; the client, reading the saved
# file with BAT alone, must name frame 7 the same.
FORMAT_SCRIPT = '''
import json, os, sys
import bpy
out = sys.argv[sys.argv.index("--output") + 1]
folder = os.path.dirname(out)
scene, seen = bpy.context.scene, {}
formats = [i.identifier for i in bpy.types.ImageFormatSettings.bl_rna.properties["file_format"].enum_items]
paths = ["//render/shot010_####", "//shot_##_v2.jpg", "//a#b/frame", "//x_####.TIFF", "/tmp/abs/abs_###"]
for n, fmt in enumerate(formats):
    scene.render.image_settings.file_format = fmt
    for m in (n % 5, (n + 2) % 5):  # every path with several formats, each format with two paths
        scene.render.filepath = paths[m]
        scene.render.use_file_extension = (n + m) % 3 != 0
        blend = os.path.join(folder, f"{fmt}-{m}.blend")
        bpy.ops.wm.save_as_mainfile(filepath=blend, copy=True)
        seen[blend] = [scene.render.frame_path(frame=7), scene.render.is_movie_format, fmt]
json.dump(seen, open(out, "w"))
'''


def test_every_format_s_name_agrees_with_blender_s_frame_path(tmp_path: Path) -> None:
    import json

    from framefarm.client import scene_output

    script = tmp_path / "formats.py"
    script.write_text(FORMAT_SCRIPT)
    seen = json.loads(make_scene(tmp_path / "seen.json", script=script).read_text())
    assert {fmt for _path, _movie, fmt in seen.values()} >= {"PNG", "OPEN_EXR_MULTILAYER", "CINEON", "DPX", "JPEG2000",
                                                              "WEBP", "TIFF", "FFMPEG", "TARGA_RAW", "HDR", "IRIS"}
    for blend, (frame_path, is_movie, fmt) in seen.items():
        output = scene_output.read(Path(blend))
        assert output is not None and output.is_video == is_movie, (blend, fmt)
        if is_movie:
            continue  # a movie's frames render as PNG (movies.py); Blender's path is the movie's
        named = scene_output.output_of(output, None)
        assert named is not None and named["multilayer"] == (fmt == "OPEN_EXR_MULTILAYER")
        # The script's own file is never saved, so Blender leaves `//` relative: to the .blend's folder.
        blender_name = Path(frame_path).name if frame_path.startswith("/tmp/abs/") else frame_path
        assert not blender_name.startswith("/"), frame_path
        assert output_names.entry_name(str(named["pattern"]), 7) == blender_name, (blend, fmt)
