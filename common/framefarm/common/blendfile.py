"""Which Blender saved a .blend file, read without Blender and without loading the file.

The gateway checks every upload before it becomes a job: a file that is not a .blend, or
one cut short by a broken upload, must be refused with a message an artist understands,
instead of surfacing later as a cryptic Blender failure on some worker. Workers and the
scheduler also need the Blender version that saved a scene. All of that lives in the file
header and the chain of block headers, so this module streams: it decompresses gzip/zstd
on the fly and seeks (or reads and discards) over block contents, so a file of many GB
costs a bounded amount of memory.

The layout below follows Blender's own reader (blenloader's BLO_core_blend_header.cc and
BLO_core_bhead.hh, Blender 5.0):

- Header, file format 0 (12 bytes, every Blender up to 4.x): ``BLENDER`` + pointer size
  (``_`` = 4 bytes, ``-`` = 8) + endianness (``v`` little, ``V`` big) + 3 version digits,
  e.g. ``BLENDER-v304`` is Blender 3.4.
- Header, file format 1 (17 bytes, Blender 5.0+): ``BLENDER`` + header size ``17`` + ``-``
  + 2-digit format version ``01`` + ``v`` + 4 version digits, e.g. ``BLENDER17-01v0500``.
  Pointers are always 8 bytes and Blender only accepts little endian here.
- Then blocks, each a block header (BHead) followed by ``len`` bytes of data, until the
  block with code ``ENDB``, which Blender writes last (it is how a complete file ends):
  BHead4: code, int32 len, uint32 old, int32 SDNAnr, int32 nr (format 0, 4-byte pointers);
  SmallBHead8: code, int32 len, uint64 old, int32 SDNAnr, int32 nr (format 0, 8-byte);
  LargeBHead8: code, int32 SDNAnr, uint64 old, int64 len, int64 nr (format 1).
- Compression wraps the whole file: gzip (Blender before 3.0) or zstd (3.0 and later, as
  several frames plus a skippable seek-table frame; 5.0 compresses by default).
"""
from __future__ import annotations

import gzip
import os
import re
import struct
import zlib
from dataclasses import dataclass
from typing import BinaryIO, Union

__all__ = ["BlendFileError", "BlendInfo", "read_blend_info"]

_BLEND_MAGIC = b"BLENDER"
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_CHUNK = 1 << 20  # bytes read at a time when data has to be read to be skipped

_HEADER_0 = re.compile(rb"BLENDER([_-])([vV])(\d{3})")
_HEADER_1 = re.compile(rb"BLENDER17-01v(\d{4})")  # Blender reads nothing else as format 1

# What other files commonly uploaded by mistake start with, to make the refusal helpful.
_KNOWN_SIGNATURES = (
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"\x76\x2f\x31\x01", "an OpenEXR image"),
    (b"PK\x03\x04", "a zip archive"),
    (b"%PDF", "a PDF document"),
)

PathOrFile = Union[str, "os.PathLike[str]", BinaryIO]


class BlendFileError(ValueError):
    """The data is not a complete, readable .blend file; the message says why, for a user."""


@dataclass(frozen=True)
class BlendInfo:
    """What the header says about a .blend file."""

    version: int  # Blender version that saved it: 304 for 3.4, 405 for 4.5, 500 for 5.0
    compression: str  # 'none', 'gzip' or 'zstd'
    pointer_size: int  # 4 or 8
    little_endian: bool

    @property
    def version_string(self) -> str:
        """The version as Blender shows it: '3.4', '4.5', '2.79'."""
        return f"{self.version // 100}.{self.version % 100}"


def read_blend_info(path_or_fileobj: PathOrFile, *, check_complete: bool = True) -> BlendInfo:
    """Read the version and layout of a .blend file, from a path or a binary file object.

    With ``check_complete`` the block headers are walked up to the ``ENDB`` block, so a
    file that was cut short is refused here rather than on a worker. A file object is read
    from its current position and left open; it need not be seekable (an upload stream).
    Raises BlendFileError for anything that is not a complete .blend; errors opening or
    reading the file itself (OSError) pass through unchanged.
    """
    if isinstance(path_or_fileobj, (str, os.PathLike)):
        with open(path_or_fileobj, "rb") as fileobj:
            return _read_info(fileobj, check_complete)
    return _read_info(path_or_fileobj, check_complete)


def _read_info(fileobj: BinaryIO, check_complete: bool) -> BlendInfo:
    seekable = _is_seekable(fileobj)
    start = fileobj.tell() if seekable else 0
    head = _read_upto(fileobj, 16)
    if not head:
        raise BlendFileError("the file is empty")
    if seekable:
        fileobj.seek(start)
    else:
        fileobj = _Prepended(head, fileobj)  # type: ignore[assignment]

    if head.startswith(_GZIP_MAGIC):
        compression = "gzip"
    elif head.startswith(_ZSTD_MAGIC):
        compression = "zstd"
    elif head.startswith(_BLEND_MAGIC):
        return _parse(_Stream(fileobj, seekable), "none", check_complete)
    elif _BLEND_MAGIC.startswith(head):
        raise _truncated("it ends inside the file header")
    else:
        raise BlendFileError(f"not a .blend file (it starts with {_describe(head)})")
    return _parse_compressed(fileobj, compression, check_complete)


def _parse_compressed(fileobj: BinaryIO, compression: str, check_complete: bool) -> BlendInfo:
    """Parse through a streaming decompressor, turning its errors into BlendFileError."""
    if compression == "gzip":
        errors: tuple[type[Exception], ...] = (gzip.BadGzipFile, zlib.error)
        stream: BinaryIO = gzip.GzipFile(fileobj=fileobj, mode="rb")  # type: ignore[assignment]
    else:
        # Imported here so plain and gzip files can be read where zstandard is missing.
        import zstandard

        errors = (zstandard.ZstdError,)
        # Blender writes several zstd frames plus a skippable seek-table frame.
        stream = zstandard.ZstdDecompressor().stream_reader(
            fileobj, read_across_frames=True, closefd=False
        )
    try:
        return _parse(_Stream(stream, seekable=False), compression, check_complete)
    except EOFError as exc:  # gzip: the compressed stream stops before its end marker
        raise _truncated(f"the {compression}-compressed data ends early") from exc
    except errors as exc:
        raise BlendFileError(f"the {compression}-compressed data is corrupt: {exc}") from exc
    finally:
        stream.close()


def _parse(stream: _Stream, compression: str, check_complete: bool) -> BlendInfo:
    head = stream.read_upto(12)
    if len(head) < 12 and _BLEND_MAGIC.startswith(head[:7]):
        raise _truncated("it ends inside the file header")
    if not head.startswith(_BLEND_MAGIC):
        raise BlendFileError(
            f"not a .blend file (it is {compression}-compressed, but the data inside starts"
            f" with {_describe(head)})"
        )
    if head[7:8] in (b"_", b"-"):
        match = _HEADER_0.fullmatch(head)
        if match is None:
            raise _unknown_header(head)
        pointer_size = 4 if match[1] == b"_" else 8
        info = BlendInfo(int(match[3]), compression, pointer_size, little_endian=match[2] == b"v")
        order = "<" if info.little_endian else ">"
        # (struct, index of the block length in it)
        bhead = (struct.Struct(order + ("4siIii" if info.pointer_size == 4 else "4siQii")), 1)
    else:
        if head[7:9] != b"17":  # a header size this reader does not know
            raise _unknown_header(head)
        head += stream.read_exact(5, "the file header")
        match = _HEADER_1.fullmatch(head)
        if match is None:
            raise _unknown_header(head)
        info = BlendInfo(int(match[1]), compression, pointer_size=8, little_endian=True)
        bhead = (struct.Struct("<4siQqq"), 3)
    if check_complete:
        _walk_blocks(stream, *bhead)
    return info


def _walk_blocks(stream: _Stream, bhead: struct.Struct, len_index: int) -> None:
    """Follow the chain of blocks to ``ENDB``; a missing end means the file was cut short."""
    while True:
        offset = stream.pos
        fields = bhead.unpack(stream.read_exact(bhead.size, "a block header"))
        code: bytes = fields[0]
        length: int = fields[len_index]
        if code == b"ENDB":
            return
        if length < 0 or not _plausible_code(code):
            raise BlendFileError(
                f"the .blend file is corrupt: no valid block header at byte {offset}"
                " (of the uncompressed data)"
            )
        stream.skip(length, f"the data of the {_code_name(code)} block at byte {offset}")


class _Stream:
    """Reads exactly, skips cheaply, and knows its position and (when seekable) its size."""

    def __init__(self, fileobj: BinaryIO, seekable: bool) -> None:
        self._fileobj = fileobj
        self.pos = 0
        self._size: int | None = None
        if seekable:
            start = fileobj.tell()
            self._size = fileobj.seek(0, os.SEEK_END) - start
            fileobj.seek(start)

    def read_upto(self, n: int) -> bytes:
        data = _read_upto(self._fileobj, n)
        self.pos += len(data)
        return data

    def read_exact(self, n: int, what: str) -> bytes:
        data = self.read_upto(n)
        if len(data) < n:
            raise _truncated(f"it ends inside {what}, after {self.pos} bytes")
        return data

    def skip(self, n: int, what: str) -> None:
        if self._size is not None:
            if self.pos + n > self._size:
                raise _truncated(f"it ends inside {what}, after {self._size} bytes")
            self._fileobj.seek(n, os.SEEK_CUR)
            self.pos += n
            return
        remaining = n
        while remaining:
            data = self._fileobj.read(min(remaining, _CHUNK))
            if not data:
                raise _truncated(f"it ends inside {what}, after {self.pos} bytes")
            remaining -= len(data)
            self.pos += len(data)


class _Prepended:
    """A read-only stream of ``head`` followed by the rest of ``rest``.

    Detecting the compression needs the first bytes; on a stream that cannot seek back
    (an upload being received) they are handed out again from here.
    """

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self._head = head
        self._rest = rest

    def read(self, size: int = -1) -> bytes:
        if not self._head:
            return self._rest.read(size)
        if size is None or size < 0:
            data, self._head = self._head + self._rest.read(), b""
            return data
        data, self._head = self._head[:size], self._head[size:]
        return data

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def close(self) -> None:
        """The wrapped stream belongs to the caller; leave it open."""


def _read_upto(fileobj: BinaryIO, n: int) -> bytes:
    """Read up to ``n`` bytes, fewer only at the end (streams may return short reads)."""
    parts = []
    while n > 0:
        data = fileobj.read(n)
        if not data:
            break
        parts.append(data)
        n -= len(data)
    return b"".join(parts)


def _is_seekable(fileobj: BinaryIO) -> bool:
    try:
        return bool(fileobj.seekable())
    except (AttributeError, OSError, ValueError):
        return False


def _plausible_code(code: bytes) -> bool:
    """Block codes are ASCII, e.g. b'DATA', b'DNA1', b'OB\\0\\0'; anything else is garbage."""
    return code[:1].isalpha() and all(b == 0 or 32 <= b < 127 for b in code)


def _code_name(code: bytes) -> str:
    return code.rstrip(b"\0").decode("ascii", "replace")


def _describe(head: bytes) -> str:
    shown = repr(head[:8])
    for signature, kind in _KNOWN_SIGNATURES:
        if head.startswith(signature):
            return f"{shown}, the signature of {kind}"
    return shown


def _truncated(detail: str) -> BlendFileError:
    return BlendFileError(
        f"the .blend file is truncated: {detail}; the upload or copy was probably cut short"
    )


def _unknown_header(head: bytes) -> BlendFileError:
    text = head.decode("ascii", "replace")
    return BlendFileError(
        f"unrecognized .blend file header {text!r}: it may have been saved by a newer"
        " Blender than this Framefarm understands"
    )
