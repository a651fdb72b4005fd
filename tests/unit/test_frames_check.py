"""frames_check on images made here with Pillow (system/test_render.py checks it on
every format the real Blender writes)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image

from framefarm.worker.frames_check import FrameCheckError, check_frame


def test_check_frame_accepts_a_good_png_and_rejects_damage(tmp_path: Path) -> None:
    good = tmp_path / "0001.png"
    Image.effect_noise((48, 48), 64).convert("RGB").save(good)
    check_frame(good, 48, 48)
    data = good.read_bytes()
    for cut in (len(data) // 2, len(data) - 1):
        bad = tmp_path / f"cut{cut}.png"
        bad.write_bytes(data[:cut])
        with pytest.raises(FrameCheckError, match="truncated|not a readable image"):
            check_frame(bad, 48, 48)
    with pytest.raises(FrameCheckError, match="48x48 pixels, expected 64x64"):
        check_frame(good, 64, 64)
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(os.urandom(3000))
    with pytest.raises(FrameCheckError):
        check_frame(garbage, 48, 48)
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(FrameCheckError, match="empty"):
        check_frame(tmp_path / "empty.png", 48, 48)
    with pytest.raises(FrameCheckError, match="missing"):
        check_frame(tmp_path / "nope.png", 48, 48)
    garbage_exr = tmp_path / "garbage.exr"
    garbage_exr.write_bytes(b"\x76\x2f\x31\x01" + os.urandom(500))
    with pytest.raises(FrameCheckError, match="OpenEXR"):
        check_frame(garbage_exr, 48, 48)
