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
