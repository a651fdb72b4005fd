"""Issue 15: scenes as artists make them, generated with the real Blender, each rendered by
plain Blender (`blender -b FILE -f 1`, or `-a` for a movie) and by the farm, side by side:
libraries linked two levels deep through a path that climbs a folder, a baked particle cache,
a UDIM set, an image sequence, a sequencer strip, a font, a video output with sound, a corrupt
file, a missing texture, a missing particle cache, no camera, a video output rendered as frames
with --format. The farm agrees with Blender (the same pixels where it makes frames, the same
movie by ffprobe where it makes a movie, the same reason where it fails) and never shows a
traceback. One farm serves the module; scenes are 64 px with one sample.

Not here: an OpenVDB cache on disk. Debian's Blender 3.4 cannot bake a smoke domain in the
background (mantaflow fails evaluating it), and no other tool here writes a .vdb."""
from __future__ import annotations

import json
import math
import shutil
import struct
import subprocess
import tempfile
import wave
from pathlib import Path

import pytest

from apitools import bearer, expect_error, job_body, scene_bytes, scene_sha, submit, unchanged
from clustertools import Cluster, cluster_env, make_tokens
from farmtools import REPO, check_frames, framefarm_cli, make_scene, require, require_blender, skip_or_fail
from framefarm.client.formats import IMAGE_FORMATS
from framefarm.gateway.localfarm import RedisServer
from test_movies import plain_blender_movie, probe

__all__ = ["scene_bytes", "scene_sha"]  # fixtures, imported for pytest

VARIANTS = REPO / "tests" / "scene_variants.py"


def blender_f1(scene: Path, out: Path) -> tuple[subprocess.CompletedProcess, list[str]]:
    """Plain Blender, as an artist runs it: `blender -b FILE -o OUT/#### -f 1`; (the run,
    the files it made)."""
    out.mkdir(parents=True, exist_ok=True)
    run = subprocess.run([require_blender(), "-b", str(scene), "-o", f"{out}/####", "-f", "1"],
                         capture_output=True, text=True, timeout=240)
    return run, sorted(p.name for p in out.iterdir())


@pytest.fixture(scope="module")
def farm(short_tmp, tmp_path_factory):
    """One farm for the module, on a redis-server of its own: a gateway and a worker (with ffmpeg)."""
    require_blender()
    require("redis-server")
    folder = Path(tempfile.mkdtemp(prefix="redis-", dir=short_tmp))
    server = RedisServer(folder, folder / "redis.log").start()
    cluster = Cluster(tmp_path_factory.mktemp("farm"), server, make_tokens(server.client()), cluster_env())
    try:
        cluster.add_gateway()
        cluster.add_worker()
        cluster.wait_registered(1)
        yield cluster
    finally:
        cluster.stop()
        server.stop()


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    require_blender()
    return make_scene(tmp_path_factory.mktemp("base") / "base.blend", "--size", "64", "--frames", "1-4",
                      "--samples", "1")


def variant(scene: Path, name: str, out: Path, *extra: str) -> Path:
    """`scene` turned into one of tests/scene_variants.py's cases, saved as `out`."""
    run = subprocess.run([require_blender(), "-b", "--factory-startup", str(scene), "--python-exit-code", "1",
                          "--python", str(VARIANTS), "--", "--variant", name, "--output", str(out), *extra],
                         capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    return out


def no_traceback(*texts: str) -> None:
    for text in texts:
        assert "Traceback" not in text, text


def test_corrupt_blend_is_one_line_and_exit_status_2(tmp_path):
    # A header and an end block but no DNA: every header check passes, the tracer cannot read it.
    corrupt = tmp_path / "corrupt.blend"
    corrupt.write_bytes(b"BLENDER-v304" + struct.pack("<4siQii", b"REND", 8, 1, 0, 1) + b"x" * 8
                        + struct.pack("<4siQii", b"ENDB", 0, 0, 0, 0))
    blender, made = blender_f1(corrupt, tmp_path / "blender")
    assert "Failed to read blend file" in blender.stdout and made == []
    # The farm is never reached: the scene is refused while packing.
    farm = framefarm_cli("submit", str(corrupt), "--frames", "1", env={
        "FRAMEFARM_GATEWAYS": "http://127.0.0.1:9", "FRAMEFARM_TOKEN": "ff_c_unused",
        "FRAMEFARM_HOME": str(tmp_path / "home")})
    assert farm.returncode == 2, farm.stderr
    no_traceback(farm.stdout, farm.stderr)
    assert farm.stderr.count("\n") == 1, farm.stderr
    assert farm.stderr.startswith(f"framefarm: error: {corrupt} is corrupt: ")
    assert "No DNA1 block" in farm.stderr


def on_farm(farm: Cluster, *args: str) -> subprocess.CompletedProcess:
    """`framefarm submit ARGS` against the module's farm; a run past its time fails with the farm's logs."""
    try:
        return framefarm_cli("submit", *args, env=farm.client_env(), timeout=240)
    except subprocess.TimeoutExpired:
        pytest.fail(f"framefarm submit {' '.join(args)} took over 240 s\n{farm.logs()}")


def same_pixels(a: Path, b: Path) -> None:
    """Two renders of one frame agree: same size, no channel more than 2 of 255 apart (Cycles with
    the same samples and seed renders the same image wherever it runs)."""
    from PIL import Image, ImageChops

    with Image.open(a) as x, Image.open(b) as y:
        assert x.size == y.size, (x.size, y.size)
        diff = ImageChops.difference(x.convert("RGBA"), y.convert("RGBA"))
        assert max(high for _low, high in diff.getextrema()) <= 2, diff.getextrema()


FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
# Each case and what tests/scene_variants.py needs for it; plain Blender renders each.
FRAME_CASES = {"linked": (), "caches": (), "udim": (), "image-sequence": (), "sequencer": (),
               "font": ("--font", str(FONT))}


# A smoke cache as a simulation writes it: a density grid (a box of it) in an OpenVDB file,
# written with Debian's python3-openvdb (Blender 3.4 cannot bake a smoke domain in the background).
WRITE_VDB = """
import sys, pyopenvdb as vdb
grid = vdb.FloatGrid()
grid.fill((-6, -6, -6), (6, 6, 6), 1.0)
grid.name = "density"
grid.transform = vdb.createLinearTransform(voxelSize=0.1)
vdb.write(sys.argv[1], grids=[grid])
"""


def openvdb_file(path: Path) -> Path:
    run = subprocess.run(["/usr/bin/python3", "-c", WRITE_VDB, str(path)], capture_output=True, text=True,
                         timeout=60)
    if run.returncode != 0:
        skip_or_fail(f"cannot write an OpenVDB file (Debian's python3-openvdb): {run.stderr[-300:]}")
    return path


@pytest.mark.parametrize("case", [*FRAME_CASES, "openvdb"])
def test_the_farm_renders_the_frame_blender_renders(farm, base, tmp_path, case):
    if case == "font" and not FONT.is_file():
        require(str(FONT))  # Debian's fonts-dejavu-core: skipped here, a failure in CI
    extra = ("--vdb", str(openvdb_file(tmp_path / "smoke.vdb"))) if case == "openvdb" else FRAME_CASES[case]
    scene = variant(base, case, tmp_path / "project" / "shot" / "scene.blend", *extra)
    blender, made = blender_f1(scene, tmp_path / "blender")
    assert made == ["0001.png"], blender.stdout[-2000:]
    if case == "openvdb":  # the cache is really in the picture: without it the frame is another
        blender_f1(base, tmp_path / "no-volume")
        with pytest.raises(AssertionError):
            same_pixels(tmp_path / "blender" / "0001.png", tmp_path / "no-volume" / "0001.png")
    out = tmp_path / "farm"
    run = on_farm(farm, str(scene), "--frames", "1", "--wait", "--output", str(out))
    assert run.returncode == 0, run.stderr[-3000:] + farm.logs()
    no_traceback(run.stdout, run.stderr)
    check_frames(out, [1], (64, 64))
    same_pixels(tmp_path / "blender" / "0001.png", out / "0001.png")


def tone(path: Path, seconds: float = 1.0, rate: int = 48000) -> Path:
    """A WAV file of a 440 Hz tone, for a sequencer's sound strip."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / rate)))
                               for i in range(int(seconds * rate))))
    return path


def test_a_video_output_with_sound_makes_the_movie_blender_makes(farm, base, tmp_path):
    require("ffmpeg")
    folder = tmp_path / "project"
    (folder / "audio").mkdir(parents=True)
    # In a folder of its own: BAT joins a strip's folder '//' and its name as '/tone.wav', so a strip
    # whose file lies beside the .blend reads as missing (left as found: docs/limitations in the report).
    scene = variant(base, "video-audio", folder / "scene.blend", "--sound", str(tone(folder / "audio" / "tone.wav")))
    blender = plain_blender_movie(scene, tmp_path / "blender")
    out = tmp_path / "farm"
    run = on_farm(farm, str(scene), "--frames", "1-4", "--wait", "--json", "--output", str(out))
    assert run.returncode == 0, run.stderr[-3000:] + farm.logs()
    no_traceback(run.stdout, run.stderr)
    job = json.loads(run.stdout)
    assert job["format"] == "PNG" and job["finish"]["state"] == "done"
    # The movie alone (no --keep-frames), named as Blender names it, and the same movie by ffprobe.
    assert sorted(p.name for p in out.iterdir()) == [blender.name] == ["0001-0004.mp4"]
    assert probe(out / blender.name) == probe(blender) == {"codec": "h264", "fps": "25/1", "frames": 4,
                                                          "audio": "aac"}


def test_missing_texture_and_cache_are_listed_and_allow_missing_renders_as_blender(farm, tmp_path):
    folder = tmp_path / "project"
    base = make_scene(folder / "base.blend", "--frames", "1-2", "--texture", str(folder / "textures" / "tex.png"))
    scene = variant(base, "missing-cache", folder / "scene.blend")
    (folder / "textures" / "tex.png").unlink()
    assert not (folder / "blendcache_scene").exists()  # never baked
    # Blender renders it, without the texture and without the cache (writing the cache as it
    # simulates, so it renders a copy: the farm must see the cache missing).
    blender, made = blender_f1(Path(shutil.copytree(folder, tmp_path / "copy")) / scene.name,
                               tmp_path / "blender")
    assert made == ["0001.png"], blender.stdout[-2000:]
    refused = framefarm_cli("submit", str(scene), "--frames", "1", env=farm.client_env())
    assert refused.returncode == 2, refused.stderr
    no_traceback(refused.stdout, refused.stderr)
    assert refused.stderr.splitlines() == [
        "framefarm: error: the scene references 2 file(s) that do not exist:",
        '  //blendcache_scene/farmcache_*.bphys (used by object "Subject.modifiers[0]" in scene.blend)',
        '  //textures/tex.png (used by image "Checker" in scene.blend)',
        "fix them, or submit with --allow-missing to render without them, as Blender does"]
    out = tmp_path / "farm"
    run = on_farm(farm, str(scene), "--frames", "1", "--allow-missing", "--wait", "--output", str(out))
    assert run.returncode == 0, run.stderr + farm.logs()
    no_traceback(run.stdout, run.stderr)
    check_frames(out, [1], (48, 48))


def test_a_video_output_as_frames_with_format_and_no_camera_fails_with_blenders_reason(farm, tmp_path):
    video = make_scene(tmp_path / "video" / "scene.blend", "--format", "FFMPEG", "--frames", "1-3")
    both = make_scene(tmp_path / "both" / "scene.blend", "--format", "FFMPEG", "--no-camera")
    # Blender with no camera: its reason, and no movie (the file it opened before failing holds
    # a container header of a few hundred bytes, no frame).
    blender, made = blender_f1(both, tmp_path / "blender")
    assert "Error: Cannot render, no camera" in blender.stdout
    assert made == ["0001-0250.mp4"] and (tmp_path / "blender" / made[0]).stat().st_size < 1024
    # --format PNG: the video scene renders its frames, as Blender's -F PNG would, and no movie.
    out = tmp_path / "frames"
    run = on_farm(farm, str(video), "--frames", "1-3", "--format", "png", "--wait", "--json", "--output", str(out))
    assert run.returncode == 0, run.stderr + farm.logs()
    job = json.loads(run.stdout)
    assert job["format"] == "PNG" and job["finish"] is None
    check_frames(out, [1, 2, 3], (48, 48))
    exr = tmp_path / "exr"
    run = on_farm(farm, str(video), "--frames", "2", "--format", "OPEN_EXR", "--wait", "--output", str(exr))
    assert run.returncode == 0, run.stderr + farm.logs()
    assert sorted(p.name for p in exr.iterdir()) == ["0002.exr"]
    # No camera and a video output: the farm would make the movie, so Blender's reason is the only
    # one, in its words, as plain Blender says it (the worker's own check lists every reason at
    # once where there are more: test_bpy_backend.py, test_addon.py).
    for extra in ([], ["--format", "PNG"]):
        run = on_farm(farm, str(both), "--frames", "1", "--wait", "--json", *extra)
        assert run.returncode == 1
        assert json.loads(run.stdout)["error"] == "Cannot render, no camera"
        no_traceback(run.stdout, run.stderr, farm.logs())


def test_format_is_checked_against_blenders_image_formats(http, tokens, scene_sha):
    for bad in ("FFMPEG", "png", "AVI_JPEG", 7):
        with unchanged(http):
            resp = http.post("/v1/jobs", json=job_body(scene_sha, format=bad), headers=bearer(tokens.client))
            err = expect_error(resp, 400, "bad_format")
        assert "format must be one of Blender's image formats" in err["message"] and "OPEN_EXR" in err["message"]
    for good in ("OPEN_EXR", None):
        job = submit(http, tokens.client, scene_sha, format=good)
        assert job["format"] == good


def test_the_clients_formats_are_the_gateways():
    import yaml

    spec = yaml.safe_load((REPO / "backend" / "framefarm" / "gateway" / "openapi.yaml").read_text())
    enum = spec["components"]["schemas"]["JobRequest"]["properties"]["format"]["enum"]
    assert enum == [*IMAGE_FORMATS, None]
