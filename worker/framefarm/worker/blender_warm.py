"""The control loop of a warm Blender (warm.py), run inside Blender after blender_setup's checks.

warm.py copies this function's source, with blender_setup's, into the script Blender runs
with `--python` after loading the scene; like the setup it imports what it needs itself and
must stay valid in every Blender's Python (3.10+), Debian's 3.4 and the bpy 5.0 module alike.

Protocol, one JSON object per line. The worker writes requests to Blender's stdin:
`{"frames": [...], "start": S, "end": E, "step": J, "expect": PATH, "threads": T}` renders
those frames, as `blender -t T -s S -e E -j J -a` would (T null: the scene's own threads), with the scene's own settings (persistent data is kept
between parts where the scene turns it on: this is one session); `{"ping": true}`, sent to a
spare process a part does not use, only keeps it from idling out. Blender answers on stdout,
each answer a line that starts with the process's marker, a random word the worker chose
and passed in the script, which the scene cannot learn and so cannot print: `{"ready": true}`
once the scene is loaded and checked, `{"frame": F,
"seconds": S}` after each frame is written, `{"done": true}` after the last. End of input
ends the process, and so does silence: no request for `idle_s` seconds (the worker waits for
work, or is frozen) and the process exits by itself, freeing its scene's memory; the worker
never sends to a process idle for more than half that (warm.py), so no request meets an exit. Any failure raises: Blender exits (with --python-exit-code), and the
worker reads the reason from its output as for a cold render and starts a new process.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # in Blender, its source is copied into the same script
    from .blender_setup import _blender_setup


def _blender_warm(params: dict) -> None:
    """Runs inside Blender: the scene is loaded; render what the worker asks, until stdin ends."""
    import json
    import os
    import select
    import sys
    import time

    import bpy

    marker = params["marker"]

    def answer(message: dict) -> None:
        sys.stdout.flush()  # Blender's own lines about the frame come before its answer
        print(marker + json.dumps(message), flush=True)

    began = {"at": time.perf_counter()}

    def frame_started(scene, *_args) -> None:
        began["at"] = time.perf_counter()

    def frame_written(scene, *_args) -> None:
        answer({"frame": scene.frame_current, "seconds": time.perf_counter() - began["at"]})

    setup = {"device": params["device"], "has_oidn": params["has_oidn"]}
    render = bpy.context.scene.render
    own_threads = (render.threads_mode, render.threads)  # the scene's, for a process alone
    _blender_setup({**setup, "frames": [], "expect": params["expect"]})
    bpy.app.handlers.render_pre.append(frame_started)
    bpy.app.handlers.render_write.append(frame_written)
    answer({"ready": True})
    pending = b""
    while True:
        while b"\n" not in pending:
            readable, _, _ = select.select([sys.stdin], [], [], params["idle_s"])
            if not readable:
                return  # idle too long: exit, the worker starts a new one when it needs one
            chunk = os.read(sys.stdin.fileno(), 65536)
            if not chunk:
                return  # the worker closed the pipe
            pending += chunk
        line, pending = pending.split(b"\n", 1)
        if not line.strip():
            continue
        request = json.loads(line)
        if request.get("ping"):  # a spare the part does not use: only its idle clock restarts
            continue
        scene = bpy.context.scene
        # Blender's -s/-e/-j set exactly these before -a renders.
        scene.frame_start, scene.frame_end, scene.frame_step = request["start"], request["end"], request["step"]
        # Blender's -t, as a cold process sharing the cores gets it; alone, the scene's own setting.
        if request.get("threads"):
            scene.render.threads_mode, scene.render.threads = "FIXED", request["threads"]
        else:
            scene.render.threads_mode, scene.render.threads = own_threads
        _blender_setup({**setup, "frames": request["frames"], "expect": request["expect"]})
        bpy.ops.render.render(animation=True)
        answer({"done": True})
