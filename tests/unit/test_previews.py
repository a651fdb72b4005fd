"""The worker's frame previews (worker/previews.py): within the farm's bounds whatever the part."""
from __future__ import annotations

import io
import os
import zipfile

from PIL import Image

from framefarm.worker import previews


def test_each_readable_frame_gets_a_jpeg_named_by_its_number(tmp_path):
    Image.new("RGB", (1920, 1080), (200, 30, 30)).save(tmp_path / "0007.png")
    Image.new("I;16", (320, 240)).save(tmp_path / "0008.png")  # 16-bit
    Image.new("RGBA", (64, 64)).save(tmp_path / "0009.png")
    (tmp_path / "0010.exr").write_bytes(b"not an image Pillow reads")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        assert previews.add(zf, sorted(tmp_path.iterdir())) == 3
    with zipfile.ZipFile(buf) as zf:
        assert sorted(zf.namelist()) == ["_meta/previews/7.jpg", "_meta/previews/8.jpg", "_meta/previews/9.jpg"]
        with Image.open(io.BytesIO(zf.read("_meta/previews/7.jpg"))) as img:
            assert img.format == "JPEG" and max(img.size) == previews.side_for(4)


def test_a_part_of_many_noisy_frames_stops_at_the_budget(tmp_path, monkeypatch):
    monkeypatch.setattr(previews, "BUDGET_BYTES", 60_000)  # the rule, at a size a test makes quickly
    frames = []
    for i in range(50):
        path = tmp_path / f"{i:04d}.png"
        Image.frombytes("RGB", (160, 160), os.urandom(160 * 160 * 3)).save(path)  # noise compresses badly
        frames.append(path)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        written = previews.add(zf, frames)
    with zipfile.ZipFile(buf) as zf:
        sizes = [i.file_size for i in zf.infolist()]
    assert 0 < written == len(sizes) < 50
    assert sum(sizes) <= previews.BUDGET_BYTES and max(sizes) <= previews.MAX_PREVIEW_BYTES
