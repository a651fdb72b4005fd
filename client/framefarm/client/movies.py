"""Which movie a job asks the farm for: the scene's own video output, or a preview of its frames.

A scene set to a video output (FFMPEG, or Blender's old AVI types: scene_output.py) renders on the farm as
lossless PNG frames, and the job's finishing task (the farm's "encode") makes the movie the
scene asks for. `--format` overrides that, as Blender's `-F` does: frames in that format, no
movie. `--movie` asks for an H.264 MP4 preview of any job's frames, beside them.

Whether the frames go into the result beside the scene's movie (`--keep-frames`): not by
default. The artist asked for a movie; its lossless frames weigh tens of times more (a
1080p shot of 250 frames is gigabytes of PNG against megabytes of H.264), and every download
and the farm's storage would pay for what is rarely wanted. A preview's frames are the job's
product, so they are always kept.
"""
from __future__ import annotations

from typing import Any

from .formats import LOSSLESS_DEFAULT

__all__ = ["plan"]

def plan(*, video_scene: bool, output_format: str | None, movie: bool,
         keep_frames: bool) -> tuple[str | None, dict[str, Any] | None]:
    """(the job's format, its `finish`) for these choices (see the module's docstring)."""
    if video_scene and output_format is None:
        return LOSSLESS_DEFAULT, {"kind": "encode", "keep_frames": keep_frames, "options": {"video": "scene"}}
    if movie:
        return output_format, {"kind": "encode", "keep_frames": True, "options": {"video": "preview"}}
    return output_format, None
