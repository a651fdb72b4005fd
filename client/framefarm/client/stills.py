"""A still's frame, read from the scene when the artist names none (`framefarm submit --still`).

F12 renders the scene's current frame; so does a still submitted without one. The frame is
read from the .blend's data with blender-asset-tracer (the file's current scene, as Blender
opens it), so no Blender is needed on the artist's side.
"""
from __future__ import annotations

from pathlib import Path

from blender_asset_tracer import blendfile
from blender_asset_tracer.blendfile import exceptions


class NoCurrentFrame(Exception):
    """The frame cannot be read (a library file with no current scene, a damaged file): it must be given."""


def current_frame(blend: Path) -> int:
    """The current frame of the scene `blend` opens with."""
    try:
        bf = blendfile.BlendFile(Path(blend))
    except (OSError, exceptions.BlendFileError) as e:
        raise NoCurrentFrame(f"{blend}: {e}") from None
    try:
        globals_ = bf.find_blocks_from_code(b"GLOB")
        scene = globals_[0].get_pointer(b"curscene") if globals_ else None
        if scene is None:
            raise NoCurrentFrame(f"{blend} names no current scene: give the frame, as in --still 12")
        return int(scene.get((b"r", b"cfra")))
    finally:
        bf.close()
