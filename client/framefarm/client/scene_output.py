"""The scene's output settings, read from the .blend with blender-asset-tracer (no Blender here).

What Blender renders is set in the scene's RenderData (`r`): the output path (`r.pic`, the
Output Properties' path), the format (`r.im_format.imtype`), whether file extensions are added
(`r.scemode`'s R_EXTENSION bit) and the JPEG 2000 codec. From them the client names the job's
frames as a local render would (common/output_names.py) and tells a video output (movies.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from framefarm.common import output_names

__all__ = ["SceneOutput", "read", "output_of"]

# Blender's R_IMF_IMTYPE_* (DNA_scene_types.h) -> the extension Blender gives its frames. Checked
# against Blender 3.4's own `render.file_extension` for each format (tests/system/test_output_names.py).
_EXTENSIONS = {0: ".tga", 1: ".rgb", 4: ".jpg", 7: ".rgb", 14: ".tga", 17: ".png", 20: ".bmp", 21: ".hdr",
               22: ".tif", 23: ".exr", 26: ".cin", 27: ".dpx", 28: ".exr", 30: ".jp2", 35: ".webp"}
# Movie formats: AVI raw, AVI JPEG, FFMPEG, and the old H.264, Xvid and Theora types Blender reads as FFMPEG.
VIDEO_IMTYPES = frozenset({15, 16, 24, 31, 32, 33})
MULTILAYER = 28
# The names of Blender's -F (formats.py) -> their imtype.
_BY_NAME = {"TGA": 0, "IRIS": 1, "JPEG": 4, "RAWTGA": 14, "PNG": 17, "BMP": 20, "HDR": 21, "TIFF": 22,
            "OPEN_EXR": 23, "CINEON": 26, "DPX": 27, "OPEN_EXR_MULTILAYER": 28, "JP2": 30, "WEBP": 35}
_R_EXTENSION = 1 << 4  # RenderData.scemode
_JP2_CODEC_J2K = 1


@dataclass(frozen=True)
class SceneOutput:
    path: str  # render.filepath, as saved
    imtype: int
    use_extension: bool
    jp2_codec: int = 0

    @property
    def is_video(self) -> bool:
        return self.imtype in VIDEO_IMTYPES

    def extension(self, output_format: str | None = None) -> str:
        """The extension Blender gives a frame in the scene's format, or in `output_format` (-F)."""
        imtype = _BY_NAME[output_format] if output_format else self.imtype
        if imtype == 30 and self.jp2_codec == _JP2_CODEC_J2K:
            return ".j2c"
        return _EXTENSIONS.get(imtype, ".png")  # a movie's frames are rendered as PNG (movies.py)


def read(blend: Path) -> SceneOutput | None:
    """The output settings of the scene Blender renders from `blend` (the file's current scene);
    None when the file cannot be read that way (a newer layout: the farm names frames 0001.png)."""
    from blender_asset_tracer import blendfile

    try:
        bf = blendfile.open_cached(Path(blend))
        try:
            scene = bf.find_blocks_from_code(b"GLOB")[0].get_pointer(b"curscene")
            if scene is None:
                return None
            pic = bytes(scene.get((b"r", b"pic"))).decode("utf-8", "replace")  # as Blender shows a bad name
            return SceneOutput(pic, int(scene.get((b"r", b"im_format", b"imtype"))),
                               bool(int(scene.get((b"r", b"scemode"))) & _R_EXTENSION),
                               int(scene.get((b"r", b"im_format", b"jp2_codec"))))
        finally:
            blendfile.close_all_cached()
    except (OSError, LookupError, ValueError, TypeError, blendfile.exceptions.BlendFileError):
        return None


def output_of(scene: SceneOutput | None, output_format: str | None) -> dict[str, object] | None:
    """The job's `output` (openapi.yaml's OutputNames): the frames' pattern in the zip and whether
    they are multilayer OpenEXR; None when the scene could not be read."""
    if scene is None:
        return None
    imtype = _BY_NAME[output_format] if output_format else scene.imtype
    extension = scene.extension(output_format) if scene.use_extension else ""
    pattern = output_names.pattern(scene.path, extension)
    try:
        output_names.check(pattern)
    except ValueError:
        return None  # a name no file system holds (Blender could not write it either): frames as 0001.png
    return {"pattern": pattern, "multilayer": imtype == MULTILAYER}
