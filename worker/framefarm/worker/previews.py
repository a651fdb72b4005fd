"""Small JPEG previews of a part's frames, for the dashboard's thumbnails (the part's result
carries them as `_meta/previews/<frame>.jpg`: docs/architecture.md, *Result metadata*).

The farm bounds what a result may carry under `_meta/` (2 MiB in all, 256 KiB a preview) and
refuses a result past it, so previews are made smaller for parts of many frames and stop at
a budget well inside the bound: a part always keeps its frames, at worst without some
previews. A frame Pillow cannot read (OpenEXR, say) simply has none.
"""
from __future__ import annotations

import io
import logging
import re
import zipfile
from pathlib import Path

from PIL import Image

log = logging.getLogger("framefarm.worker.previews")

BUDGET_BYTES = 1536 * 1024  # of the farm's 2 MiB for `_meta/`: the rest is stats.json's
MAX_PREVIEW_BYTES = 200 * 1024  # the farm takes up to 256 KiB
_FRAME = re.compile(r"(\d{1,9})\.[A-Za-z0-9]+")  # Blender's #### names: 0042.png


def side_for(frames: int) -> int:
    """The longest side of a preview: large enough to show one frame big, smaller when many share the budget."""
    return 640 if frames <= 8 else 320 if frames <= 40 else 160


def jpeg(path: Path, side: int) -> bytes | None:
    """A JPEG of the image, its longest side at most `side`; None if Pillow cannot read it."""
    try:
        with Image.open(path) as img:
            img.draft("RGB", (side, side))  # JPEG sources decode smaller straight away
            img.thumbnail((side, side))
            rgb = img.convert("RGB")  # 16-bit, alpha, palette: a JPEG is 8-bit RGB
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        log.debug("no preview of %s: %s", path.name, e)
        return None
    for quality in (80, 60, 40):
        out = io.BytesIO()
        rgb.save(out, "JPEG", quality=quality, optimize=True)
        if out.tell() <= MAX_PREVIEW_BYTES:
            return out.getvalue()
    return None


def add(zf: zipfile.ZipFile, frames: list[Path]) -> int:
    """Write a preview of each frame (named by its number) into the result zip, within the
    budget; returns how many were written."""
    side, used, written = side_for(len(frames)), 0, 0
    for path in frames:
        m = _FRAME.fullmatch(path.name)
        data = jpeg(path, side) if m else None
        if m is None or data is None:
            continue
        if used + len(data) > BUDGET_BYTES:
            log.info("previews stop at %d of %d frames: the part's budget of %d bytes is used", written,
                     len(frames), BUDGET_BYTES)
            break
        zf.writestr(f"_meta/previews/{int(m[1])}.jpg", data)  # stored: a JPEG does not deflate
        used += len(data)
        written += 1
    return written
