"""Add-on preferences: where the farm is and the token to reach it.

They live in Blender's user preferences, never in a .blend file, so a scene
handed to someone else does not carry the token along.
"""
from __future__ import annotations

import re

import bpy

from . import state
from .tasks import FarmSettings


class FramefarmPreferences(bpy.types.AddonPreferences):
    bl_idname = __package__

    gateways: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="Gateways",
        description="Farm gateway URLs, separated by commas or spaces (e.g. http://farm1:8000, http://farm2:8000); "
                    "if one is down the next is used",
        default="",
    )
    token: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="Access token",
        description="A client token from `framefarm token create --role client`",
        default="", subtype="PASSWORD",
    )

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        if layout is None:
            return
        layout.prop(self, "gateways")
        layout.prop(self, "token")
        row = layout.row()
        row.operator("framefarm.test_connection", icon="LINKED")
        cur = state.current
        if cur.connection:
            layout.label(text=cur.connection, icon="CHECKMARK" if cur.connection_ok else "ERROR")


def gateway_list(text: str) -> list[str]:
    return [g for g in re.split(r"[\s,;]+", text.strip()) if g]


def get(context: bpy.types.Context | None = None) -> FramefarmPreferences | None:
    prefs = (context or bpy.context).preferences
    addon = prefs.addons.get(__package__ or "") if prefs else None
    return addon.preferences if addon else None


def settings(context: bpy.types.Context | None = None) -> FarmSettings | None:
    """A thread-safe copy of the farm settings, or None when none are configured."""
    prefs = get(context)
    if prefs is None or not gateway_list(prefs.gateways):
        return None
    return FarmSettings(tuple(gateway_list(prefs.gateways)), prefs.token.strip())


CLASSES = (FramefarmPreferences,)
