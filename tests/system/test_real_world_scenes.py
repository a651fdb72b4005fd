"""Issue 15: scenes as artists make them, generated with the real Blender, each rendered by
plain `blender -b FILE -f 1` and by the farm, side by side: a corrupt file, a missing texture,
a missing particle cache, no camera with a video output, a video output rendered as frames
with --format. The farm agrees with Blender (frames where it makes frames, the same reason
where it fails) and never shows a traceback."""
from __future__ import annotations

import json
import shutil
import struct
import subprocess
from pathlib import Path

from apitools import bearer, expect_error, job_body, scene_bytes, scene_sha, submit, unchanged
from farmtools import REPO, check_frames, framefarm_cli, make_scene, require_blender
from framefarm.client.formats import IMAGE_FORMATS

__all__ = ["scene_bytes", "scene_sha"]  # fixtures, imported for pytest

VARIANTS = REPO / "tests" / "scene_variants.py"


def blender_f1(scene: Path, out: Path) -> tuple[subprocess.CompletedProcess, list[str]]:
    """Plain Blender, as an artist runs it: `blender -b FILE -o OUT/#### -f 1`; (the run,
    the files it made)."""
    out.mkdir(parents=True, exist_ok=True)
    run = subprocess.run([require_blender(), "-b", str(scene), "-o", f"{out}/####", "-f", "1"],
                         capture_output=True, text=True, timeout=240)
    return run, sorted(p.name for p in out.iterdir())


def variant(scene: Path, name: str, out: Path) -> Path:
    """`scene` turned into one of tests/scene_variants.py's cases, saved as `out`."""
    run = subprocess.run([require_blender(), "-b", "--factory-startup", str(scene), "--python-exit-code", "1",
                          "--python", str(VARIANTS), "--", "--variant", name, "--output", str(out)],
                         capture_output=True, text=True, timeout=120)
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


def test_missing_texture_and_cache_are_listed_and_allow_missing_renders_as_blender(cluster, tmp_path):
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
    cluster.add_gateway()
    cluster.add_worker()
    refused = framefarm_cli("submit", str(scene), "--frames", "1", env=cluster.client_env())
    assert refused.returncode == 2, refused.stderr
    no_traceback(refused.stdout, refused.stderr)
    assert refused.stderr.splitlines() == [
        "framefarm: error: the scene references 2 file(s) that do not exist:",
        '  //blendcache_scene/farmcache_*.bphys (used by object "Subject.modifiers[0]" in scene.blend)',
        '  //textures/tex.png (used by image "Checker" in scene.blend)',
        "fix them, or submit with --allow-missing to render without them, as Blender does"]
    out = tmp_path / "farm"
    farm = framefarm_cli("submit", str(scene), "--frames", "1", "--allow-missing", "--wait", "--output", str(out),
                         env=cluster.client_env())
    assert farm.returncode == 0, farm.stderr + cluster.logs()
    no_traceback(farm.stdout, farm.stderr)
    check_frames(out, [1], (48, 48))


def test_video_output_renders_as_frames_with_format_and_every_reason_is_said_at_once(cluster, tmp_path):
    video = make_scene(tmp_path / "video" / "scene.blend", "--format", "FFMPEG", "--frames", "1-3")
    both = make_scene(tmp_path / "both" / "scene.blend", "--format", "FFMPEG", "--no-camera")
    # Blender with no camera: its reason, and no movie (the file it opened before failing holds
    # a container header of a few hundred bytes, no frame).
    blender, made = blender_f1(both, tmp_path / "blender")
    assert "Error: Cannot render, no camera" in blender.stdout
    assert made == ["0001-0250.mp4"] and (tmp_path / "blender" / made[0]).stat().st_size < 1024
    cluster.add_gateway()
    cluster.add_worker()
    env = cluster.client_env()
    # --format PNG: the video scene renders its frames, as Blender's -F PNG would.
    out = tmp_path / "frames"
    farm = framefarm_cli("submit", str(video), "--frames", "1-3", "--format", "png", "--wait", "--json",
                         "--output", str(out), env=env)
    assert farm.returncode == 0, farm.stderr + cluster.logs()
    assert json.loads(farm.stdout)["format"] == "PNG"
    check_frames(out, [1, 2, 3], (48, 48))
    exr = tmp_path / "exr"
    farm = framefarm_cli("submit", str(video), "--frames", "2", "--format", "OPEN_EXR", "--wait",
                         "--output", str(exr), env=env)
    assert farm.returncode == 0, farm.stderr + cluster.logs()
    assert sorted(p.name for p in exr.iterdir()) == ["0002.exr"]
    # No camera and a video output: both reasons in one failure, the way through named.
    farm = framefarm_cli("submit", str(both), "--frames", "1", "--wait", "--json", env=env)
    assert farm.returncode == 1
    error = json.loads(farm.stdout)["error"]
    assert "the scene's output format is FFMPEG, a video" in error and "--format PNG" in error, error
    assert "Cannot render, no camera" in error, error
    # With --format PNG only Blender's own reason is left.
    farm = framefarm_cli("submit", str(both), "--frames", "1", "--format", "PNG", "--wait", "--json", env=env)
    assert farm.returncode == 1
    assert json.loads(farm.stdout)["error"] == "Cannot render, no camera"
    no_traceback(farm.stdout, farm.stderr, cluster.logs())


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
