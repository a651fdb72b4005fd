"""read_blend_info against real files written by the installed Blender 3.4 (the synthetic
2.79/4.5/5.0 files are checked in unit/test_blendfile.py)."""
from __future__ import annotations

import gzip
import subprocess
from pathlib import Path

import pytest

from blendtools import Unseekable
from farmtools import require_blender
from framefarm.common.blendfile import BlendFileError, BlendInfo, read_blend_info


# -- real files from the installed Blender ----------------------------------------------

@pytest.fixture(scope="module")
def real_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    blender = require_blender()
    folder = tmp_path_factory.mktemp("real")
    plain, compressed = folder / "plain.blend", folder / "compressed.blend"
    script = (
        "import bpy\n"
        f"bpy.ops.wm.save_as_mainfile(filepath={str(plain)!r}, compress=False)\n"
        f"bpy.ops.wm.save_as_mainfile(filepath={str(compressed)!r}, compress=True)\n"
    )
    subprocess.run([blender, "-b", "--factory-startup", "--python-exit-code", "1",
                    "--python-expr", script], check=True, capture_output=True, timeout=120)
    gzipped = folder / "gzipped.blend"  # what Blender 2.x wrote for "compress"
    gzipped.write_bytes(gzip.compress(plain.read_bytes()))
    return {"plain": plain, "compressed": compressed, "gzipped": gzipped}


@pytest.mark.parametrize("kind, compression",
                         [("plain", "none"), ("compressed", "zstd"), ("gzipped", "gzip")])
def test_real_blender_34_files(real_files, kind: str, compression: str) -> None:
    path = real_files[kind]
    info = read_blend_info(path)
    assert info == BlendInfo(304, compression, 8, True)
    assert info.version_string == "3.4"
    assert read_blend_info(Unseekable(path.read_bytes(), max_read=4096)) == info


@pytest.mark.parametrize("kind", ["plain", "compressed", "gzipped"])
def test_real_file_cut_in_half_is_truncated(real_files, tmp_path: Path, kind: str) -> None:
    data = real_files[kind].read_bytes()
    half = tmp_path / f"half-{kind}.blend"
    half.write_bytes(data[: len(data) // 2])
    with pytest.raises(BlendFileError, match=r"^the \.blend file is truncated: "):
        read_blend_info(half)
    # The header alone still names the version, for a message like "3.4 file, but cut short".
    assert read_blend_info(half, check_complete=False).version == 304
