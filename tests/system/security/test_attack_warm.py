"""A hostile scene against a warm Blender (worker/warm.py): it cannot answer for Blender.

A warm Blender's answers to the worker are lines on its output that start with a marker. A
scene controls text Blender prints (object names appear in its progress lines, and a name may
hold a line break), so a scene could print a line that looks like an answer, such as "part
done" before its frames are written. The marker carries 96 random bits chosen per process and
given only to the control script, which a scene cannot run (auto-run is off) or read: the fake
line reaches the log as Blender's output and the worker waits for the real answers.
"""
from __future__ import annotations

import subprocess

from PIL import Image

from farmtools import require_blender
from framefarm.common.frameset import PartSpan
from framefarm.worker.render import probe_blender, render_frames
from framefarm.worker.sandbox import choose
from framefarm.worker.warm import MARKER, WarmSlot

FAKE = f'{MARKER}{"0" * 24} {{"done": true}}'


def test_a_scene_printing_fake_answers_does_not_end_a_warm_part(scenes, tmp_path):
    blender = require_blender()
    base = scenes("--animated", "--size", "48", "--samples", "2", "--no-texture")
    hostile = tmp_path / "hostile.blend"
    # Every object renamed to a line break and a fake "done" answer; the camera keeps its role.
    rename = ("import bpy\n"
              f"for i, o in enumerate(bpy.data.objects): o.name = '\\n{FAKE}\\n' + str(i)\n"
              f"bpy.ops.wm.save_as_mainfile(filepath={str(hostile)!r})\n")
    done = subprocess.run([blender, "-b", "--factory-startup", str(base), "--python-exit-code", "1",
                           "--python-expr", rename], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:]
    sandbox = choose("auto")
    info = probe_blender(blender, sandbox)
    slot = WarmSlot(info, tmp_path / "slot", sandbox=sandbox)
    log = tmp_path / "part.log"
    try:
        warm = slot.render("job", hostile, PartSpan(0, 1, 3, 1), tmp_path / "warm", log_path=log)
    finally:
        slot.close()
    cold = render_frames(info, hostile, PartSpan(0, 1, 3, 1), tmp_path / "cold", sandbox=sandbox)
    assert [p.name for p in warm] == ["0001.png", "0002.png", "0003.png"]
    for a, b in zip(cold, warm, strict=True):
        with Image.open(a) as x, Image.open(b) as y:
            assert x.tobytes() == y.tobytes()
    # The attack really reached the output, as a line of its own, and was taken as Blender's words.
    # (The log labels each line with its process: "[1] ".)
    lines = [line.split("] ", 1)[-1] for line in log.read_text().splitlines()]
    assert any(line.startswith(FAKE) for line in lines), log.read_text()[-3000:]
