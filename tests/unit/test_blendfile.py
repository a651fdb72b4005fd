"""read_blend_info against synthetic 2.79/4.5/5.0 files.

Blender 4.5 and 5.0 are not installed here, so their files are built byte by byte from the
layout in Blender's source (see framefarm.common.blendfile); system/test_blendfile_real.py
checks real 3.4 files from the installed Blender, so at least one format is checked against
the real writer.
"""
from __future__ import annotations

import gzip
import io
import os
import struct
import tracemalloc
from pathlib import Path

import pytest
import zstandard

from blendtools import Unseekable
from framefarm.common.blendfile import BlendFileError, BlendInfo, read_blend_info


# -- synthetic files ---------------------------------------------------------------------

def classic_bhead(code: bytes, length: int, *, pointer_size: int = 8, order: str = "<") -> bytes:
    fmt = "4siIii" if pointer_size == 4 else "4siQii"
    return struct.pack(order + fmt, code, length, 0xDEADBEEF, 0, 1)


def large_bhead(code: bytes, length: int) -> bytes:
    """Blender 5.0's LargeBHead8: code, SDNAnr, old, len, nr."""
    return struct.pack("<4siQqq", code, 0, 0xDEADBEEF, length, 1)


def classic_file(header: bytes, *, pointer_size: int = 8, order: str = "<") -> bytes:
    out = [header]
    for code, data in ((b"REND", b"r" * 72), (b"GLOB", b"g" * 100), (b"OB\0\0", b"o" * 33),
                       (b"DATA", b""), (b"DNA1", b"SDNANAME" * 10)):
        out += [classic_bhead(code, len(data), pointer_size=pointer_size, order=order), data]
    out.append(classic_bhead(b"ENDB", 0, pointer_size=pointer_size, order=order))
    return b"".join(out)


def blender50_file() -> bytes:
    out = [b"BLENDER17-01v0500"]
    for code, data in ((b"REND", b"r" * 72), (b"GLOB", b"g" * 100), (b"SC\0\0", b"s" * 5000),
                       (b"DNA1", b"SDNANAME" * 10)):
        out += [large_bhead(code, len(data)), data]
    out.append(large_bhead(b"ENDB", 0))
    return b"".join(out)


def zstd_like_blender(data: bytes) -> bytes:
    """Several frames plus a skippable frame at the end, the way Blender writes them."""
    compressor = zstandard.ZstdCompressor()
    middle = len(data) // 2
    skippable = struct.pack("<II", 0x184D2A5E, 8) + b"seektabl"
    return compressor.compress(data[:middle]) + compressor.compress(data[middle:]) + skippable


@pytest.fixture
def write(tmp_path: Path):
    def write(name: str, data: bytes) -> Path:
        path = tmp_path / name
        path.write_bytes(data)
        return path
    return write


@pytest.mark.parametrize(
    "data, expected",
    [
        (classic_file(b"BLENDER-v405"), BlendInfo(405, "none", 8, True)),
        (gzip.compress(classic_file(b"BLENDER-v405")), BlendInfo(405, "gzip", 8, True)),
        (zstd_like_blender(classic_file(b"BLENDER-v405")), BlendInfo(405, "zstd", 8, True)),
        (zstd_like_blender(blender50_file()), BlendInfo(500, "zstd", 8, True)),
        (blender50_file(), BlendInfo(500, "none", 8, True)),
        (gzip.compress(blender50_file()), BlendInfo(500, "gzip", 8, True)),
        (classic_file(b"BLENDER_v279", pointer_size=4), BlendInfo(279, "none", 4, True)),
        (classic_file(b"BLENDER-V279", order=">"), BlendInfo(279, "none", 8, False)),
    ],
    ids=["4.5", "4.5-gzip", "4.5-zstd", "5.0-zstd", "5.0-plain", "5.0-gzip", "2.79-32bit",
         "2.79-bigendian"],
)
def test_synthetic_files(write, data: bytes, expected: BlendInfo) -> None:
    assert read_blend_info(write("scene.blend", data)) == expected
    assert read_blend_info(Unseekable(data)) == expected
    assert read_blend_info(io.BytesIO(data)) == expected


def test_version_string() -> None:
    assert BlendInfo(304, "none", 8, True).version_string == "3.4"
    assert BlendInfo(405, "none", 8, True).version_string == "4.5"
    assert BlendInfo(500, "zstd", 8, True).version_string == "5.0"
    assert BlendInfo(279, "none", 8, True).version_string == "2.79"


def test_file_object_is_read_from_its_position_and_left_open() -> None:
    fileobj = io.BytesIO(b"junk" + classic_file(b"BLENDER-v405"))
    fileobj.seek(4)
    assert read_blend_info(fileobj).version == 405
    assert not fileobj.closed


@pytest.mark.parametrize("make", [lambda d: d, gzip.compress, zstd_like_blender],
                         ids=["plain", "gzip", "zstd"])
@pytest.mark.parametrize("cut", [5, 10, 14, 30, -1, -20, -24])
def test_synthetic_truncated(make, cut: int) -> None:
    data = blender50_file()
    truncated = make(data[:cut])
    with pytest.raises(BlendFileError, match=r"^the \.blend file is truncated: "):
        read_blend_info(io.BytesIO(truncated))
    with pytest.raises(BlendFileError, match=r"^the \.blend file is truncated: "):
        read_blend_info(Unseekable(truncated))


def test_truncated_compressed_stream_itself() -> None:
    """Cutting the gzip stream (not the data inside) is reported as truncated too."""
    data = gzip.compress(classic_file(b"BLENDER-v405"))
    with pytest.raises(BlendFileError, match="truncated: the gzip-compressed data ends early"):
        read_blend_info(io.BytesIO(data[: len(data) // 2]))


def test_check_complete_false_reads_only_the_header() -> None:
    data = blender50_file()[:40]
    assert read_blend_info(io.BytesIO(data), check_complete=False).version == 500
    with pytest.raises(BlendFileError, match="truncated"):
        read_blend_info(io.BytesIO(data))


def test_empty_file(write) -> None:
    with pytest.raises(BlendFileError, match=r"^the file is empty$"):
        read_blend_info(write("empty.blend", b""))


def test_png_renamed_to_blend(write) -> None:
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(40)
    with pytest.raises(BlendFileError) as info:
        read_blend_info(write("picture.blend", png))
    assert str(info.value) == (
        "not a .blend file (it starts with b'\\x89PNG\\r\\n\\x1a\\n', the signature of a PNG image)"
    )


def test_random_bytes(write) -> None:
    noise = bytes.fromhex("0badc0ffee") + os.urandom(4000)
    # Python quotes bytes holding a ' (and no ") with double quotes: random noise sometimes does.
    with pytest.raises(BlendFileError, match=r"^not a \.blend file \(it starts with b['\"]\\x0b"):
        read_blend_info(write("noise.blend", noise))


def test_compressed_non_blend() -> None:
    with pytest.raises(BlendFileError, match=r"^not a \.blend file \(it is gzip-compressed"):
        read_blend_info(io.BytesIO(gzip.compress(b"hello world, not blender")))


def test_corrupt_compressed_data() -> None:
    data = blender50_file()
    first_frame = zstandard.ZstdCompressor().compress(data[:100])
    second_frame = bytearray(zstandard.ZstdCompressor().compress(data[100:]))
    second_frame[4:8] = b"\xff" * 4  # a frame header no decoder accepts
    data = first_frame + bytes(second_frame)
    with pytest.raises(BlendFileError, match="zstd-compressed data is corrupt"):
        read_blend_info(io.BytesIO(bytes(data)))


def test_garbage_after_header_is_corrupt() -> None:
    data = b"BLENDER-v405" + bytes(200)
    with pytest.raises(BlendFileError, match=r"^the \.blend file is corrupt: no valid block"):
        read_blend_info(io.BytesIO(data))


@pytest.mark.parametrize("header", [b"BLENDER18-01v0600", b"BLENDER17-02v0600", b"BLENDER-x304"])
def test_unknown_future_header(header: bytes) -> None:
    with pytest.raises(BlendFileError, match="unrecognized .blend file header"):
        read_blend_info(io.BytesIO(header + large_bhead(b"ENDB", 0)))


def test_huge_block_is_seeked_over(tmp_path: Path) -> None:
    """A 5 GiB block (int64 length, sparse on disk) costs a seek, not a read."""
    path = tmp_path / "huge.blend"
    size = 5 * 1024**3
    with open(path, "wb") as out:
        out.write(b"BLENDER17-01v0500" + large_bhead(b"DATA", size))
        out.seek(size, os.SEEK_CUR)
        out.write(large_bhead(b"ENDB", 0))
    assert read_blend_info(path).version == 500
    with open(path, "r+b") as out:
        out.truncate(size // 2)
    with pytest.raises(BlendFileError, match="truncated: it ends inside the data of the DATA"):
        read_blend_info(path)


def test_streaming_uses_bounded_memory() -> None:
    """1 GiB of block data through zstd and an unseekable stream, with a small peak."""
    block = 1024**3
    body = b"BLENDER17-01v0500" + large_bhead(b"DATA", block)
    compressor = zstandard.ZstdCompressor()
    chunks = [compressor.compress(body)]
    zeros = bytes(8 * 1024**2)
    chunks += [compressor.compress(zeros)] * (block // len(zeros))
    chunks.append(compressor.compress(large_bhead(b"ENDB", 0)))
    compressed = b"".join(chunks)
    tracemalloc.start()
    try:
        assert read_blend_info(Unseekable(compressed, max_read=1 << 16)).version == 500
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 1024**2
