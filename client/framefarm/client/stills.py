"""What a still needs to know of its scene, read from the .blend (`framefarm submit --still`).

F12 renders the scene's current frame; so does a still submitted without one. A scene that
denoises is submitted with `"denoise": true`, so the farm merges it on a worker that can
denoise the joined frame, or refuses it before anything renders (docs/stills.md). Both are
read from the .blend's data with blender-asset-tracer (the file's current scene, as Blender
opens it), so no Blender is needed on the artist's side.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

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


def scene_denoises(blend: Path) -> bool | None:
    """Whether the scene `blend` opens with renders with Cycles' denoising (the scene's Denoise
    and its view layer's); None when the file cannot be read that way (the farm's piece then
    tells, before rendering). Cycles keeps its settings as ID properties, which Blender stores
    only once set (a setting never changed reads as its default: on, since Blender 3.0); 5.0
    keeps them apart from the user's properties, as `system_properties`."""
    try:
        bf = blendfile.BlendFile(Path(blend))
    except (OSError, exceptions.BlendFileError):
        return None
    try:
        globals_ = bf.find_blocks_from_code(b"GLOB")
        scene = globals_[0].get_pointer(b"curscene") if globals_ else None
        if scene is None:
            return None
        if scene.get((b"r", b"engine")) != b"CYCLES" or not _cycles_setting(scene, (b"id",), b"use_denoising"):
            return False
        layer = scene.get_pointer((b"view_layers", b"first"))
        while layer is not None:
            if _cycles_setting(layer, (), b"use_denoising"):
                return True
            layer = layer.get_pointer(b"next")
        return False
    except (LookupError, ValueError, TypeError, exceptions.BlendFileError):
        return None  # a layout this reader does not know: the worker's check decides
    finally:
        bf.close()


def _cycles_setting(block: Any, prefix: tuple[bytes, ...], name: bytes, default: bool = True) -> bool:
    """The boolean Cycles setting `name` of an ID (prefix (b"id",)) or view layer, or `default`."""
    fields = (b"system_properties", b"properties") if prefix else (b"system_properties", b"id_properties")
    for field in fields:
        try:
            props = block.get_pointer((*prefix, field))
        except KeyError:  # a Blender before 5.0 has no system_properties
            continue
        group = _child(props, b"cycles") if props is not None else None
        value = _child(group, name) if group is not None else None
        if value is not None:
            return bool(value.get((b"data", b"val")))
    return default


def _child(group: Any, name: bytes) -> Any:
    """The ID property `name` in the ID property group `group`, or None."""
    item = group.get_pointer((b"data", b"group", b"first"))
    while item is not None:
        if item.get(b"name") == name:
            return item
        item = item.get_pointer(b"next")
    return None
