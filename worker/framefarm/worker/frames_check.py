"""Is a rendered frame really there, whole, and the size the scene asked for?

Blender can exit 0 and still leave a frame missing or cut short (a full disk, a
killed writer, a network file system that dropped the tail), and a part that is
reported done is never rendered again. So every frame is checked before the
worker uploads it: the formats Pillow reads are decoded in full; OpenEXR,
Radiance HDR, DPX and Cineon, which Pillow cannot decode, have their headers
parsed and their length checked against what the header promises.
"""
from __future__ import annotations

import struct
import warnings
from pathlib import Path

from PIL import Image, features

# Blender's file extensions for the image formats that Pillow decodes.
_PILLOW_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tga", ".tif", ".tiff", ".webp", ".rgb", ".sgi"}
_JPEG2000_SUFFIXES = {".jp2", ".j2c"}
_HAS_JPEG2000 = bool(features.check("jpg_2000"))
_PNG_IEND = b"\0\0\0\0IEND\xaeB`\x82"
# OpenEXR headers are small; a bigger one means a corrupt file, not a big image.
_EXR_MAX_HEADER = 4 << 20


class FrameCheckError(Exception):
    """A frame file is missing, empty, truncated, undecodable or the wrong size."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def check_frame(path: Path, width: int | None, height: int | None) -> None:
    """Raise FrameCheckError unless `path` is a complete image of width x height.

    None for width and height skips the size check (stereo 3D outputs, whose
    size depends on the stereo mode).
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise FrameCheckError(f"{path.name}: missing") from None
    if size == 0:
        raise FrameCheckError(f"{path.name}: empty file")
    suffix = path.suffix.lower()
    headers = {".exr": _exr_size, ".hdr": _radiance_size, ".dpx": _dpx_size, ".cin": _cineon_size}
    if suffix in headers:
        try:
            got = headers[suffix](path, size)
        except (KeyError, IndexError, ValueError, ZeroDivisionError, OverflowError, struct.error) as exc:
            raise FrameCheckError(f"{path.name}: corrupt header ({exc!r})") from None
    elif suffix == ".png":
        _png_trailer(path)
        got = _pillow_size(path)
    elif suffix in _PILLOW_SUFFIXES or (suffix in _JPEG2000_SUFFIXES and _HAS_JPEG2000):
        got = _pillow_size(path)
    else:
        return  # a format nobody here can read: existing and non-empty is all we know
    if width is not None and height is not None and got != (width, height):
        raise FrameCheckError(f"{path.name}: {got[0]}x{got[1]} pixels, expected {width}x{height}")


def _pillow_size(path: Path) -> tuple[int, int]:
    """Decode every pixel: a PNG cut short still opens, only a full load notices."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # bomb and EXIF warnings: errors decide here
            with Image.open(path) as image:
                image.verify()  # checksums (PNG CRCs), which load() does not look at
            with Image.open(path) as image:
                image.load()
                return image.size
    except Exception as exc:  # Pillow raises many types for a bad file
        raise FrameCheckError(f"{path.name}: not a readable image ({exc})") from None


def _png_trailer(path: Path) -> None:
    """Pillow stops at IEND without reading its CRC: a PNG that lost only its
    last bytes would pass, so check the fixed 12-byte IEND chunk."""
    with path.open("rb") as f:
        f.seek(max(0, path.stat().st_size - 12))
        if f.read() != _PNG_IEND:
            raise FrameCheckError(f"{path.name}: PNG is truncated (no IEND chunk at the end)")


def _exr_size(path: Path, file_size: int) -> tuple[int, int]:
    """Parse the OpenEXR headers and offset tables, then check that the last
    chunk of pixels lies wholly inside the file: a truncated EXR fails that."""
    with path.open("rb") as f:
        head = f.read(min(file_size, _EXR_MAX_HEADER))
        if head[:4] != b"\x76\x2f\x31\x01":
            raise FrameCheckError(f"{path.name}: not an OpenEXR file")
        if len(head) < 8:
            raise FrameCheckError(f"{path.name}: truncated OpenEXR header")
        flags = struct.unpack_from("<I", head, 4)[0]
        multipart, deep = bool(flags & 0x1000), bool(flags & 0x800)
        pos, parts = 8, []
        while True:
            attrs, pos = _exr_header(head, pos, path.name)
            parts.append(attrs)
            if not multipart or head[pos:pos + 1] == b"\0":
                pos += 1 if multipart else 0
                break
        window = parts[0].get("dataWindow")
        if window is None or len(window) != 16:
            raise FrameCheckError(f"{path.name}: OpenEXR header has no dataWindow")
        x0, y0, x1, y1 = struct.unpack("<4i", window)
        tiled = [_exr_is_tiled(attrs, multipart, bool(flags & 0x200)) for attrs in parts]
        counts = [_exr_chunk_count(attrs, is_tiled) for attrs, is_tiled in zip(parts, tiled, strict=True)]
        if deep or any(count is None for count in counts):
            if file_size <= pos + 8:
                raise FrameCheckError(f"{path.name}: OpenEXR file ends after its header")
            return x1 - x0 + 1, y1 - y0 + 1
        total = sum(count or 0 for count in counts)
        if not 0 < total <= file_size // 8:
            raise FrameCheckError(f"{path.name}: OpenEXR offset table of {total} chunks cannot fit the file")
        f.seek(pos)
        table = f.read(8 * total)
        if len(table) < 8 * total:
            raise FrameCheckError(f"{path.name}: OpenEXR file ends inside its offset table")
        offsets = struct.unpack(f"<{total}Q", table)
        if any(not pos + len(table) <= offset < file_size for offset in offsets):
            raise FrameCheckError(f"{path.name}: OpenEXR chunk offsets point outside the file (truncated?)")
        # The chunk that starts last must end inside the file.
        last = max(offsets)
        f.seek(last)
        chunk_head = f.read(24)
        part = struct.unpack_from("<i", chunk_head)[0] if multipart and len(chunk_head) >= 4 else 0
        size_at = (4 if multipart else 0) + (16 if 0 <= part < len(parts) and tiled[part] else 4)
        if len(chunk_head) < size_at + 4 or \
                last + size_at + 4 + struct.unpack_from("<i", chunk_head, size_at)[0] > file_size:
            raise FrameCheckError(f"{path.name}: OpenEXR pixel data is truncated")
    return x1 - x0 + 1, y1 - y0 + 1


def _exr_header(data: bytes, pos: int, name: str) -> tuple[dict[str, bytes], int]:
    """One header: (name, type, size, value) attributes up to an empty name."""
    attrs: dict[str, bytes] = {}
    try:
        while data[pos] != 0:
            end = data.index(b"\0", pos)
            attr = data[pos:end].decode("latin-1")
            type_end = data.index(b"\0", end + 1)
            (size,) = struct.unpack_from("<i", data, type_end + 1)
            start = type_end + 5
            if size < 0 or start + size > len(data):
                raise IndexError
            attrs[attr] = data[start:start + size]
            pos = start + size
        return attrs, pos + 1
    except (IndexError, ValueError, struct.error):
        raise FrameCheckError(f"{name}: truncated or corrupt OpenEXR header") from None


def _exr_is_tiled(attrs: dict[str, bytes], multipart: bool, single_tiled: bool) -> bool:
    return attrs.get("type", b"").startswith(b"tiled") if multipart else single_tiled


def _exr_chunk_count(attrs: dict[str, bytes], tiled: bool) -> int | None:
    """How many offsets the table holds for this part; None when that takes the
    full tiling arithmetic (mipmaps), which Blender never writes."""
    if "chunkCount" in attrs:
        return int(struct.unpack("<i", attrs["chunkCount"])[0])
    x0, y0, x1, y1 = struct.unpack("<4i", attrs["dataWindow"])
    width, height = x1 - x0 + 1, y1 - y0 + 1
    if tiled:
        tile_w, tile_h, mode = struct.unpack("<IIB", attrs["tiles"])
        if mode & 0x0F != 0:
            return None
        return int(-(-width // tile_w) * -(-height // tile_h))
    compression = attrs.get("compression", b"\0")[0]
    # NONE, RLE, ZIPS: 1 line; ZIP, PXR24: 16; PIZ, B44, B44A, DWAA: 32; DWAB: 256
    lines = {0: 1, 1: 1, 2: 1, 3: 16, 5: 16, 4: 32, 6: 32, 7: 32, 8: 32, 9: 256}.get(compression)
    return None if lines is None else int(-(-height // lines))


def _radiance_size(path: Path, file_size: int) -> tuple[int, int]:
    """Radiance .hdr: text header, a blank line, '-Y height +X width', then one
    run-length encoded (or flat) scanline per row, walked to find a short file."""
    data = path.read_bytes()
    if not data.startswith((b"#?RADIANCE", b"#?RGBE")) or b"\n\n" not in data[:65536]:
        raise FrameCheckError(f"{path.name}: not a Radiance HDR file")
    dims_start = data.index(b"\n\n") + 2
    dims_end = data.find(b"\n", dims_start)
    fields = data[dims_start:dims_end].split()
    if dims_end < 0 or len(fields) != 4 or fields[0] != b"-Y" or fields[2] != b"+X":
        raise FrameCheckError(f"{path.name}: unreadable Radiance HDR resolution line")
    width, height = int(fields[3]), int(fields[1])
    pos = dims_end + 1
    try:
        for _ in range(height):
            if 8 <= width < 32768 and data[pos:pos + 2] == b"\x02\x02":
                pos += 4
                for _channel in range(4):
                    left = width
                    while left > 0:
                        count = data[pos]
                        run = count > 128
                        count -= 128 if run else 0
                        if count == 0 or count > left:
                            raise IndexError
                        pos += 2 if run else 1 + count
                        left -= count
            else:
                pos += 4 * width
            if pos > len(data):
                raise IndexError
    except IndexError:
        raise FrameCheckError(f"{path.name}: Radiance HDR pixel data is truncated or corrupt") from None
    return width, height


def _dpx_size(path: Path, file_size: int) -> tuple[int, int]:
    """DPX: the file header states the total file size and the image size."""
    return _declared_size(path, file_size, "DPX", 780, {b"SDPX": ">", b"XPDS": "<"}, 16, 772)


def _cineon_size(path: Path, file_size: int) -> tuple[int, int]:
    """Cineon: like DPX, the header states the file size and the image size."""
    return _declared_size(path, file_size, "Cineon", 208,
                          {b"\x80\x2a\x5f\xd7": ">", b"\xd7\x5f\x2a\x80": "<"}, 20, 200)


def _declared_size(path: Path, file_size: int, kind: str, header_len: int, magic: dict[bytes, str],
                   total_at: int, size_at: int) -> tuple[int, int]:
    """Formats whose header gives the file's total length and the image's width and
    height: the magic picks the byte order; a file shorter than declared is truncated."""
    with path.open("rb") as f:
        head = f.read(header_len)
    endian = magic.get(head[:4])
    if endian is None or len(head) < header_len:
        raise FrameCheckError(f"{path.name}: not a {kind} file")
    (total,) = struct.unpack_from(endian + "I", head, total_at)
    width, height = struct.unpack_from(endian + "II", head, size_at)
    if file_size < total:
        raise FrameCheckError(f"{path.name}: {kind} file is {file_size} bytes, its header says {total}")
    return width, height
