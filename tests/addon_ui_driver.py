"""Drives the Framefarm add-on in a real Blender window (Blender 3.4 under Xvfb).

Runs as `blender --factory-startup SCENE.blend --python addon_ui_driver.py -- CONFIG.json`,
without -b: Blender's event loop runs, so the add-on's own `bpy.app.timers` drain its
queue and the Properties editor redraws the Framefarm panel for real. The script sets
the stage, then steps a scenario from a timer of its own, watching through thin wrappers
that call the real code:
- the panel's `draw`: which state it drew, what it put in the layout, any exception;
- `WindowManager.popup_menu`: the title and the lines and buttons of each popup;
- `taskrunner.post`: the upload thread is held at its first progress message until the
  panel's progress is on screen, as a slow upload would be (the UI keeps drawing).

The checks are made here, inside Blender; it writes them and screenshots of the window
to the config's "out_dir" and quits with 0 only when all of them passed.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Iterator

import bpy

sys.path.insert(0, str(Path(__file__).resolve().parent))
import addon_driver as base  # noqa: E402  (shares its CONFIG, OUT, install and configure)

CONFIG, OUT = base.CONFIG, base.OUT
OUT_DIR = Path(CONFIG["out_dir"])
STATES = ("blocked", "idle", "uploading", "running", "done")  # each must be drawn
DRAWS: dict[str, int] = {}  # panel state -> times the real UI drew it
DRAWN: dict[str, list] = {}  # panel state -> what its latest draw put in the layout
DRAW_ERRORS: list[str] = []
POPUPS: list[dict[str, Any]] = []
UPLOAD_SHOWN = threading.Event()  # the panel's upload progress is on screen: the held upload may go on
HOLD_S = 30.0
STRIP = 8  # the previews a job's row shows (thumbs.STRIP)


class RecordingLayout:
    """Passes every call to the real layout (and to the sub-layouts it makes),
    noting [call, operator or property, text] for each."""

    def __init__(self, layout: bpy.types.UILayout, items: list) -> None:
        object.__setattr__(self, "_layout", layout)
        object.__setattr__(self, "_items", items)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._layout, name, value)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._layout, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            what = args[0] if name == "operator" and args else args[1] if name == "prop" and len(args) > 1 else None
            self._items.append([name, what, kwargs.get("text")])
            result = attr(*args, **kwargs)
            return RecordingLayout(result, self._items) if isinstance(result, bpy.types.UILayout) else result
        return call


def panel_state(addon: Any, context: bpy.types.Context) -> str:
    """Which of the panel's states the add-on is in, as its draw sees it."""
    cur = addon.state.current
    if cur.submitting:
        return "uploading" if cur.progress_fraction is not None else "packing"
    records = cur.store.records(addon.operators.blend_key()) if cur.store else []
    if not records:
        return "blocked" if addon.operators.submit_blocker(context) else "idle"
    rec = records[0]
    if rec["status"] == "running":
        return "running" if 0 < rec["done"] < rec["total"] else "started"
    return rec["status"]


def watch_panel(addon: Any) -> None:
    """Open the panel and record each real draw. Blender 3.4 has no API to expand a
    panel, so it is re-registered without DEFAULT_CLOSED (as if the artist had opened it)."""
    cls = addon.gui.FRAMEFARM_PT_output
    bpy.utils.unregister_class(cls)
    cls.bl_options = set()
    bpy.utils.register_class(cls)
    real_draw = cls.draw

    def draw(self: Any, context: bpy.types.Context) -> None:
        name = panel_state(addon, context)
        DRAWS[name] = DRAWS.get(name, 0) + 1
        items: list = []
        # The panel's own methods (its draw calls helpers such as draw_jobs), with a layout that records.
        methods = {k: v for k, v in vars(cls).items() if k.startswith("draw_")}
        recording = type("RecordingPanel", (), {"layout": RecordingLayout(self.layout, items), **methods})()
        try:
            real_draw(recording, context)
        except Exception:
            DRAW_ERRORS.append(f"{name}: {traceback.format_exc()}")
            raise
        DRAWN[name] = items

    cls.draw = draw


def watch_popups() -> None:
    real_popup = bpy.types.WindowManager.popup_menu

    def popup_menu(wm: Any, draw_func: Callable, *, title: str = "", icon: str = "NONE") -> None:
        entry: dict[str, Any] = {"title": title, "icon": icon, "items": []}
        POPUPS.append(entry)

        def draw(menu: Any, context: bpy.types.Context) -> None:
            entry["window"] = context.window is not None
            recording = type("RecordingMenu", (), {"layout": RecordingLayout(menu.layout, entry["items"])})()
            try:
                draw_func(recording, context)
            except Exception:
                entry["error"] = traceback.format_exc()
                raise
        real_popup(wm, draw, title=title, icon=icon)

    bpy.types.WindowManager.popup_menu = popup_menu


def hold_upload(addon: Any) -> None:
    """The upload thread waits at its first progress message until the panel has shown it."""
    real_post = addon.taskrunner.post

    def post(kind: str, **payload: Any) -> None:
        real_post(kind, **payload)
        if kind == "progress" and payload.get("fraction") is not None \
                and threading.current_thread() is not threading.main_thread() and "upload_held" not in OUT:
            OUT["upload_held"] = UPLOAD_SHOWN.wait(HOLD_S)

    addon.taskrunner.post = post


def properties() -> tuple[bpy.types.Window, bpy.types.Area, bpy.types.Region]:
    window = bpy.context.window_manager.windows[0]
    area = next(a for a in window.screen.areas if a.type == "PROPERTIES")
    return window, area, next(r for r in area.regions if r.type == "WINDOW")


def until(what: str, done: Callable[[], Any], timeout: float) -> Iterator[float]:
    """Wait for a condition while Blender's event loop runs (yielding to it)."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        yield 0.1
    if what:
        base.step(what)


def redrawn() -> Iterator[float]:
    """Until the Properties editor has been drawn again (the panel grows as jobs are listed). The
    window is tall enough for the add-on's panel, after Blender's own, to show without scrolling:
    view2d.scroll_down run from a timer crashed Blender 3.4 (a segfault in about a third of runs
    once the job list had grown; none in 21 runs without it)."""
    _window, area, _region = properties()
    drawn = sum(DRAWS.values())
    area.tag_redraw()
    yield from until("", lambda: sum(DRAWS.values()) > drawn, 10)


def screenshot(name: str) -> Iterator[float]:
    """Save the whole window as the X server shows it, with the panel as it is now: grabbed by
    ffmpeg (x11grab), so no operator of Blender's runs from the driver's timer for it (Blender
    3.4's screenshot operator segfaulted in this test, in free(), while the driver still scrolled)."""
    yield from redrawn()
    window, area, _region = properties()
    path = OUT_DIR / f"{name}.png"
    subprocess.run([CONFIG["ffmpeg"], "-loglevel", "error", "-y", "-f", "x11grab",
                    "-video_size", f"{window.width}x{window.height}",
                    "-i", f"{os.environ['DISPLAY']}+{window.x},{window.y}", "-frames:v", "1", str(path)],
                   check=True, timeout=60)
    OUT.setdefault("screenshots", {})[name] = {"path": str(path), "window": [window.width, window.height],
                                               "area": [area.x, area.y, area.width, area.height]}


def scenario(addon: Any) -> Iterator[float]:
    cur = addon.state.current
    properties()[1].spaces.active.context = "OUTPUT"
    yield from until("the panel without a farm", lambda: DRAWS.get("blocked"), 10)
    yield from screenshot("blocked")
    base.configure(addon, CONFIG["gateways"], CONFIG["token"])
    yield from redrawn()
    yield from until("the idle panel", lambda: DRAWS.get("idle"), 10)
    window, area, region = properties()
    with bpy.context.temp_override(window=window, area=area, region=region):
        OUT["submit"] = sorted(bpy.ops.framefarm.submit("INVOKE_DEFAULT"))
    yield from until("the upload progress", lambda: DRAWS.get("uploading"), 60)
    yield from screenshot("uploading")  # the upload thread is still held: the panel shows it
    UPLOAD_SHOWN.set()
    yield from until("the job in the list", lambda: cur.last_submission.get("job"), 60)
    job = cur.last_submission["job"]
    OUT["job"] = {"id": job["id"], "total": job["frames"]["total"]}
    yield from until("a running job with progress", lambda: DRAWS.get("running"), 60)
    # The strip fills while the job runs (the test holds its last part, so it stays running).
    done = next(r["done"] for r in cur.store.records(addon.operators.blend_key()) if r["id"] == job["id"])
    yield from until("the running job's previews", lambda: len(addon.thumbs.frames(job["id"])) >= done, 60)
    yield from screenshot("running")
    yield from until("the finish notification", lambda: cur.notification.get("job_id") == job["id"], 90)
    yield from until("the finished job", lambda: DRAWS.get("done"), 10)
    yield from screenshot("done")  # with the popup
    total = job["frames"]["total"]
    yield from until("every frame's preview fetched", lambda: len(addon.thumbs.frames(job["id"])) == total, 60)
    for _ in range(20):  # the strip is drawn once the panel redraws with the previews loaded
        yield from redrawn()
        if strip_drawn(total):
            break
    yield from screenshot("strip")
    window, area, region = properties()
    with bpy.context.temp_override(window=window, area=area, region=region):
        OUT["flipbook"] = sorted(bpy.ops.framefarm.flipbook(job_id=job["id"]))
    yield from until("the flipbook playing in its window", lambda: flipbook_playing(addon, total), 10)


def flipbook_playing(addon: Any, total: int) -> bool:
    """A new window's Image Editor shows the flipbook's sequence of `total` frames, playing."""
    book = addon.state.current.flipbook
    for window in bpy.context.window_manager.windows[1:]:
        for area in window.screen.areas:
            space = area.spaces.active
            if area.type == "IMAGE_EDITOR" and space.image and space.image.name == book.get("image"):
                return (space.image.source == "SEQUENCE" and space.image_user.frame_duration == total
                        and window.screen.is_animation_playing)
    return False


def strip_drawn(total: int) -> bool:
    """The done job's row shows its latest previews as icons, and the flipbook button."""
    done = DRAWN.get("done", [])
    icons = [item for item in done if item[0] == "template_icon"]
    return len(icons) == min(total, STRIP) and ["operator", "framefarm.flipbook", None] in done


def texts(items: list, call: str = "label") -> list[str]:
    return [text or "" for kind, _what, text in items if kind == call]


def checks(addon: Any) -> dict[str, bool]:
    cur = addon.state.current
    total = OUT.get("job", {}).get("total", -1)
    finished = [p for p in POPUPS if p["title"] == "Framefarm: frames ready"]
    popup = finished[0] if finished else {"items": []}
    blocked = " ".join(texts(DRAWN.get("blocked", [])))
    running = [m for t in texts(DRAWN.get("running", [])) if (m := re.match(r"running: (\d+) / (\d+) frames", t))]
    done = DRAWN.get("done", [])
    link_buttons = {"framefarm.open_link", "framefarm.copy_link", "framefarm.download"}
    return {
        "panel drew without errors": not DRAW_ERRORS,
        "panel drew every state": all(DRAWS.get(s) for s in STATES),
        "says in full why it cannot submit": "No farm gateway configured: set one in Preferences > Add-ons > "
                                             "Framefarm" in blocked,
        "the button is drawn": all(["operator", "framefarm.submit", None] in DRAWN.get(s, []) for s in STATES),
        "upload progress shown": any(t.startswith("Uploading ") and t.endswith("%)")
                                     for t in texts(DRAWN.get("uploading", []))),
        "upload thread waited for the UI": OUT.get("upload_held") is True,
        "running job with frames done": any(0 < int(m[1]) < int(m[2]) == total for m in running),
        "done job with its buttons": f"done: {total} / {total} frames (100%)" in texts(done)
        and link_buttons | {"framefarm.forget"} <= {what for kind, what, _t in done if kind == "operator"},
        "one finish popup, in the window": len(finished) == 1 and "error" not in popup and popup.get("window") is True,
        "popup carries the frame count": any(f"{total} frames" in t for t in texts(popup["items"])),
        "popup offers the link and download": link_buttons <= {w for k, w, _t in popup["items"] if k == "operator"},
        "notification frame count": cur.notification.get("frames") == total,
        "no error reported": not [m for m in cur.messages if m[0] == "ERROR"],
        "the thumbnail strip drawn": strip_drawn(total),
        "the flipbook plays in a new window": OUT.get("flipbook") == ["FINISHED"] and flipbook_playing(addon, total),
        "screenshots saved": sorted(OUT.get("screenshots", {})) == ["blocked", "done", "running", "strip", "uploading"]
        and all(Path(s["path"]).is_file() for s in OUT["screenshots"].values()),
    }


def finish(addon: Any) -> None:
    OUT.update(draws=DRAWS, drawn=DRAWN, draw_errors=DRAW_ERRORS, popups=POPUPS,
               messages=addon.state.current.messages)
    OUT["checks"] = checks(addon)
    ok = "exception" not in OUT and all(OUT["checks"].values())
    (OUT_DIR / "out.json").write_text(json.dumps(OUT, indent=1, default=str))
    print(f"addon_ui_driver: {'all checks passed' if ok else 'FAILED'}", flush=True)
    if ok:
        bpy.ops.wm.quit_blender()
    else:
        sys.stderr.flush()
        os._exit(1)


def main() -> None:
    addon = base.install()
    scene = bpy.context.scene
    scene.frame_start, scene.frame_end = CONFIG["frames"]
    scene.framefarm.chunk = CONFIG["chunk"]
    watch_panel(addon)
    watch_popups()
    hold_upload(addon)
    steps = scenario(addon)

    def tick() -> float | None:
        try:
            return next(steps)
        except StopIteration:
            pass
        except Exception:
            OUT["exception"] = traceback.format_exc()
            traceback.print_exc()
        finish(addon)
        return None

    bpy.app.timers.register(tick, first_interval=0.5)


main()
