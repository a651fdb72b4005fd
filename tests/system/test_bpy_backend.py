"""The worker's bpy back end renders like the Blender CLI back end: same frames, names,
checks and errors, and it reports the wheel's Blender version."""
from __future__ import annotations

import pytest
from PIL import Image

from framefarm.common.frameset import FrameRange
from framefarm.worker.bpy_backend import write_launcher
from framefarm.worker.render import RenderError, probe_blender, render_frames
from test_addon import bpy_python


@pytest.fixture(scope="module")
def backends(tmp_path_factory):
    launcher = write_launcher(bpy_python(), tmp_path_factory.mktemp("bpy") / "blender-bpy")
    return {"cli": probe_blender("blender"), "bpy": probe_blender(str(launcher))}


def test_probe_reports_the_wheels_version(backends):
    assert backends["bpy"].version >= 402 and backends["bpy"].version > backends["cli"].version
    assert "CPU" in backends["bpy"].devices


def test_same_frames_and_names_as_the_cli(backends, scenes, tmp_path):
    scene = scenes("--frames", "1-10", "--animated")
    frames = FrameRange(2, 8, 3)
    out = {name: render_frames(info, scene, frames, tmp_path / name) for name, info in backends.items()}
    assert [p.name for p in out["bpy"]] == [p.name for p in out["cli"]] == ["0002.png", "0005.png", "0008.png"]
    for path in out["bpy"]:
        assert Image.open(path).size == (48, 48)


def test_same_errors_as_the_cli(backends, scenes, tmp_path):
    no_camera = scenes("--no-camera")
    not_blend = tmp_path / "not.blend"
    not_blend.write_bytes(b"hello, not a blend file\n" * 10)
    for scene, words in ((no_camera, "no camera"), (not_blend, "File format is not supported")):
        errors = {}
        for name, info in backends.items():
            with pytest.raises(RenderError) as caught:
                render_frames(info, scene, FrameRange(1, 1), tmp_path / name)
            errors[name] = caught.value
        assert all(words in e.message and e.deterministic for e in errors.values()), errors


def test_format_override_renders_a_video_scene_as_frames_like_the_cli(backends, scenes, tmp_path):
    """The job's format (Blender's -F, issue 15): both back ends render the FFMPEG scene as
    OpenEXR frames; without it both refuse the video output with the same reason."""
    scene = scenes("--format", "FFMPEG")
    for name, info in backends.items():
        files = render_frames(info, scene, FrameRange(1, 2), tmp_path / name, output_format="OPEN_EXR")
        assert [p.name for p in files] == ["0001.exr", "0002.exr"], name
        with pytest.raises(RenderError, match="output format is FFMPEG, a video.*--format PNG") as caught:
            render_frames(info, scene, FrameRange(1, 1), tmp_path / f"{name}-video")
        assert caught.value.deterministic
