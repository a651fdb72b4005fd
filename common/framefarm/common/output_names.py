"""Where a frame lands: the scene's output path pattern, as names inside a job's zip.

An artist's scene says where Blender writes its frames (Output Properties, `render.filepath`,
such as `//render/shot010_####`). The client turns that path into a *pattern* relative to the
job's zip (`pattern`), by Blender's own rules, so that the zip's entries and the downloaded
files are named exactly as a local render names them, relative to the .blend's folder:

- the last run of `#` in the file name is the frame number, zero-padded to the run's length
  (`#` in a folder's name stays a `#`); a name without one gets four (`shot` -> `shot0250`);
- with "File Extensions" on, the format's extension is added unless the name already ends
  with it (`.jpg` or `.jpeg` for JPEG, `.tif` or `.tiff` for TIFF), and another image
  format's extension at the end is replaced (`shot_####.jpg` rendered as PNG: `.png`);
- `//` (the .blend's folder) is dropped; an absolute path keeps only its file name part, and
  `.` and `..` folders are dropped: a zip entry never points outside the job's folder.

The gateway keeps a pattern only if `check` finds it safe (a client is not trusted), the
final zip names each frame with `entry_name`, and the add-on finds a frame's entry the same way.
"""
from __future__ import annotations

import re

__all__ = ["MAX_BYTES", "MAX_NAME_BYTES", "check", "entry_name", "pattern"]

MAX_BYTES = 1024  # Blender's FILE_MAX: no output path is longer
MAX_NAME_BYTES = 255  # a file or folder name on the usual file systems

# Blender 3.4's imb_ext_image: an output name ending in one of these has it replaced by the format's.
IMAGE_EXTENSIONS = (".png", ".tga", ".bmp", ".jpg", ".jpeg", ".sgi", ".rgb", ".rgba", ".tif", ".tiff", ".tx",
                    ".jp2", ".j2c", ".hdr", ".dds", ".dpx", ".cin", ".exr", ".psd", ".pdd", ".psb", ".webp")
# The extensions Blender accepts as already there for a format whose extension is the key.
_SAME = {".jpg": (".jpg", ".jpeg"), ".tif": (".tif", ".tiff")}
_DRIVE = re.compile(r"^[A-Za-z]:")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_RUN = re.compile(r"#+")


def pattern(path: str, extension: str) -> str:
    """The zip-relative pattern of Blender's output `path`, with `extension` (such as ".png", the
    format's; "" when the scene's "File Extensions" is off) added by Blender's rule."""
    text = path.replace("\\", "/")  # Blender reads both as separators
    if text.startswith("//"):
        text = text[2:]
    elif text.startswith("/") or _DRIVE.match(text):
        text = text.rsplit("/", 1)[-1]  # another machine's folder: only the name is the artist's
    folders = [part for part in text.split("/")[:-1] if part not in ("", ".", "..")]
    name = text.rsplit("/", 1)[-1]
    if "#" not in name:
        name += "####"
    if extension:
        lower = name.lower()
        if not lower.endswith(_SAME.get(extension, (extension,))):
            known = next((ext for ext in IMAGE_EXTENSIONS if lower.endswith(ext)), None)
            name = (name[:-len(known)] if known else name) + extension
    return "/".join([*folders, name])


def check(value: str) -> None:
    """Raise ValueError (its message for the client) unless `value` is a pattern `pattern` could
    have made: relative, no `.`/`..`/empty folder, no control character, a `#` run in its file
    name, within Blender's length and the file systems' name length."""
    if not value or _CONTROL.search(value) or "\\" in value:
        raise ValueError("the output pattern must be a non-empty relative path without control characters "
                         "or backslashes")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate (JSON allows "\ud800"): no file system's name
        raise ValueError("the output pattern is not valid Unicode text") from None
    if size > MAX_BYTES:
        raise ValueError(f"the output pattern is longer than {MAX_BYTES} bytes (Blender's longest path)")
    parts = value.split("/")
    if value.startswith("/") or _DRIVE.match(value) or any(part in ("", ".", "..") for part in parts):
        raise ValueError("the output pattern must stay inside the job's folder: no absolute path, drive, "
                         "empty, '.' or '..' part")
    if any(len(part.encode("utf-8")) > MAX_NAME_BYTES - 8 for part in parts):
        # -8: the frame number may lengthen the name (a negative frame past a short run)
        raise ValueError(f"a name in the output pattern is longer than {MAX_NAME_BYTES - 8} bytes")
    if "#" not in parts[-1]:
        raise ValueError("the output pattern's file name must hold a run of '#' for the frame number")


def entry_name(value: str, frame: int) -> str:
    """A frame's name under a checked pattern: its file name's last `#` run becomes the frame number,
    zero-padded to the run's length as C's %.*d pads it (a negative frame keeps its sign)."""
    folder, _, name = value.rpartition("/")
    run = list(_RUN.finditer(name))[-1]
    digits = f"{'-' if frame < 0 else ''}{str(abs(frame)).zfill(run.end() - run.start())}"
    name = name[:run.start()] + digits + name[run.end():]
    return f"{folder}/{name}" if folder else name
