"""The image formats a job may ask for instead of the scene's own (`framefarm submit --format`).

The names are those of Blender's `-F` / `--render-format`, which the worker passes on. Only
image formats: the farm renders frames, so Blender's video names (FFMPEG, AVIRAW, AVIJPEG)
are refused, and DDS, which Blender reads but cannot write, is left out. The gateway holds
the same list as an enum in openapi.yaml (test_formats checks that they agree)."""
from __future__ import annotations

__all__ = ["IMAGE_FORMATS", "LOSSLESS_DEFAULT"]

IMAGE_FORMATS = ("PNG", "OPEN_EXR", "OPEN_EXR_MULTILAYER", "TIFF", "JPEG", "JP2", "WEBP", "BMP", "TGA",
                 "RAWTGA", "IRIS", "HDR", "CINEON", "DPX")

# What to suggest for a scene whose output is a video: frames a movie can be made from without loss.
LOSSLESS_DEFAULT = "PNG"
