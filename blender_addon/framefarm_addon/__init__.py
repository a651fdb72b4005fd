"""Framefarm for Blender: render the open scene on a Framefarm render farm.

Installs as an extension (Blender 4.2+, see blender_manifest.toml) or as a
legacy add-on (Blender 3.4+, bl_info). Everything is imported relatively,
including the bundled client under `_vendor`, so the add-on works under any
package name Blender gives it (`framefarm_addon`, `bl_ext.<repo>.framefarm`).
"""
from __future__ import annotations

import sys
from pathlib import Path

import bpy

# BAT imports multiprocessing, which aliases sys.modules["__mp_main__"] to the current
# __main__: under `blender --python script.py` that is the script's temporary module, freed
# after the script, and Blender 3.4 crashes on exit when it walks sys.modules. Only child
# processes that multiprocessing spawns need the alias, and the add-on starts none.
_HAD_MP_MAIN = "__mp_main__" in sys.modules
from . import gui, jobs_store, notify, operators, preferences, props, state, taskrunner, thumbs  # noqa: E402

if not _HAD_MP_MAIN:
    sys.modules.pop("__mp_main__", None)

bl_info = {
    "name": "Framefarm",
    "author": "Framefarm authors",
    "version": (0, 1, 0),
    "blender": (3, 4, 0),
    "location": "Properties > Output > Framefarm",
    "description": "Render the open scene on a Framefarm render farm and get the frames back",
    "category": "Render",
}

CLASSES = props.CLASSES + preferences.CLASSES + operators.CLASSES + gui.CLASSES


def store_path() -> Path:
    """The job list lives in the add-on's user folder: the extension's own one
    where Blender has it (4.2+), the user config folder before that."""
    if __package__.startswith("bl_ext.") and hasattr(bpy.utils, "extension_path_user"):
        return Path(bpy.utils.extension_path_user(__package__, create=True)) / "jobs.json"
    return Path(bpy.utils.user_resource("CONFIG", path="framefarm", create=True)) / "jobs.json"


@bpy.app.handlers.persistent
def _on_load(_dummy: object = None) -> None:
    notify.watch_active()


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    props.register()
    taskrunner.begin()
    store = store_path()
    state.current = state.State(store=jobs_store.JobStore(store), cache=store.parent / "previews")
    thumbs.register()
    bpy.app.timers.register(notify.timer, first_interval=0.5, persistent=True)
    bpy.app.handlers.load_post.append(_on_load)
    notify.watch_active()


def unregister() -> None:
    taskrunner.end()
    if _on_load in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.remove(_on_load)
    if bpy.app.timers.is_registered(notify.timer):
        bpy.app.timers.unregister(notify.timer)
    thumbs.unregister()
    props.unregister()
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
