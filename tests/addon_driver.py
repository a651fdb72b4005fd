"""Drives the Framefarm add-on inside real Blender, like an artist or a pipeline script would.

Runs as `blender -b --factory-startup --python-exit-code 1 --python addon_driver.py -- CONFIG.json`
(Debian's Blender 3.4) or as `python addon_driver.py CONFIG.json` with the `bpy` wheel (5.0).
It installs the built zip the way a user does, performs one scenario and writes what it
observed to the config's "out" JSON file; tests/test_addon.py makes the assertions, so a
failure shows what Blender saw, not just that something differed.
"""
from __future__ import annotations

import importlib
import json
import sys
import traceback
import urllib.request
from pathlib import Path

import bpy

CONFIG = json.loads(Path(sys.argv[-1]).read_text())
OUT: dict = {"blender": bpy.app.version_string, "steps": []}


def step(name: str) -> None:
    OUT["steps"].append(name)
    print(f"addon_driver: {name}", flush=True)


def install() -> object:
    """Legacy add-on install before 4.2, extension install from 4.2 on; "reopen"
    only enables what an earlier run installed (a restarted Blender)."""
    if hasattr(bpy.context.preferences.system, "use_online_access"):
        bpy.context.preferences.system.use_online_access = CONFIG.get("online", True)
    if CONFIG["scenario"] == "reopen":
        module = "bl_ext.user_default.framefarm" if bpy.app.version >= (4, 2, 0) else "framefarm_addon"
        result = bpy.ops.preferences.addon_enable(module=module)
    elif bpy.app.version >= (4, 2, 0):
        result = bpy.ops.extensions.package_install_files(filepath=CONFIG["zip"], repo="user_default",
                                                          enable_on_install=True)
        module = "bl_ext.user_default.framefarm"
    else:
        result = bpy.ops.preferences.addon_install(filepath=CONFIG["zip"])
        assert result == {"FINISHED"}, result
        result = bpy.ops.preferences.addon_enable(module="framefarm_addon")
        module = "framefarm_addon"
    OUT["install"] = sorted(result)
    OUT["module"] = module
    OUT["enabled"] = module in bpy.context.preferences.addons
    step("installed")
    return importlib.import_module(module)


def configure(addon: object, gateways: str, token: str) -> None:
    prefs = bpy.context.preferences.addons[addon.__name__].preferences
    prefs.gateways, prefs.token = gateways, token


def artist_view() -> dict:
    """What an artist would notice changing in the open file."""
    return {"filepath": bpy.data.filepath, "is_dirty": bpy.data.is_dirty,
            "packed": sorted(i.name for i in bpy.data.images if i.packed_file),
            "images": sorted((i.name, i.filepath) for i in bpy.data.images)}


def wait(addon: object, done, timeout: float) -> bool:
    return addon.taskrunner.drain_until(done, timeout)  # type: ignore[attr-defined]


def submit_and_wait(addon: object, timeout: float) -> dict:
    st = addon.state.current  # type: ignore[attr-defined]
    result = bpy.ops.framefarm.submit()
    OUT.setdefault("submit_results", []).append(sorted(result))
    ok = wait(addon, lambda: not st.submitting, timeout)
    return {"finished": ok, "submission": json.loads(json.dumps(st.last_submission)),
            "messages": list(st.messages)}


def scenario_e2e(addon: object) -> None:
    configure(addon, CONFIG["gateways"], CONFIG["token"])
    bpy.ops.wm.open_mainfile(filepath=CONFIG["scene"])
    scene = bpy.context.scene
    scene.frame_start, scene.frame_end, scene.frame_step = CONFIG["frames"]
    scene.framefarm.chunk = 2
    st = addon.state.current
    OUT["before"] = artist_view()
    OUT["poll"] = bpy.ops.framefarm.submit.poll()
    first = submit_and_wait(addon, 120)
    OUT["first"] = first
    OUT["after_submit"] = artist_view()
    step("submitted")
    job_id = (first["submission"].get("job") or {}).get("id")
    if not job_id:
        return
    if CONFIG.get("expect_render", True):
        OUT["notified"] = wait(addon, lambda: st.notification.get("job_id") == job_id, CONFIG["timeout"])
        OUT["notification"] = dict(st.notification)
        step("notified")
        url = st.notification.get("url")
        if url:
            with urllib.request.urlopen(url, timeout=30) as resp:
                Path(CONFIG["link_zip"]).write_bytes(resp.read())
        OUT["download"] = sorted(bpy.ops.framefarm.download(job_id=job_id, directory=CONFIG["download_dir"],
                                                            wait=True))
        step("downloaded")
    else:
        wait(addon, lambda: (st.store.find(job_id) or ("", {}))[1].get("waiting", "").startswith("waiting"), 30)
        OUT["waiting"] = st.store.find(job_id)[1]
        bpy.ops.framefarm.pause(job_id=job_id)
        wait(addon, lambda: st.store.find(job_id)[1].get("paused"), 30)
        OUT["after_pause"] = dict(st.store.find(job_id)[1])
        bpy.ops.framefarm.resume(job_id=job_id)
        wait(addon, lambda: not st.store.find(job_id)[1].get("paused"), 30)
        OUT["after_resume"] = dict(st.store.find(job_id)[1])
        bpy.ops.framefarm.cancel(job_id=job_id)
        wait(addon, lambda: st.store.find(job_id)[1]["status"] == "cancelled", 30)
        OUT["after_cancel"] = st.store.find(job_id)[1]
    OUT["second"] = submit_and_wait(addon, 120)
    OUT["after"] = artist_view()
    OUT["store"] = st.store.records(addon.operators.blend_key())
    step("resubmitted")


def call(op, **kwargs) -> list[str] | str:
    """An operator's result, or the error it reported (Blender raises those in scripts)."""
    try:
        return sorted(op(**kwargs))
    except RuntimeError as exc:
        return str(exc)


def scenario_reopen(addon: object) -> None:
    """After a restart: the file's job list is still there."""
    configure(addon, CONFIG["gateways"], CONFIG["token"])
    bpy.ops.wm.open_mainfile(filepath=CONFIG["scene"])
    OUT["store"] = addon.state.current.store.records(addon.operators.blend_key())


def blocker() -> str | None:
    return sys.modules[OUT["module"] + ".operators"].submit_blocker(bpy.context)


def scenario_checks(addon: object) -> None:
    bpy.ops.wm.open_mainfile(filepath=CONFIG["scene"])
    scene = bpy.context.scene
    st = addon.state.current
    polls = {}
    polls["no_gateway"] = (bpy.ops.framefarm.submit.poll(), blocker())
    configure(addon, CONFIG["gateways"], CONFIG["bad_token"])
    if hasattr(bpy.context.preferences.system, "use_online_access"):
        bpy.context.preferences.system.use_online_access = False
        polls["offline"] = (bpy.ops.framefarm.submit.poll(), blocker())
        bpy.context.preferences.system.use_online_access = True
    polls["ready"] = (bpy.ops.framefarm.submit.poll(), blocker())
    camera, scene.camera = scene.camera, None
    polls["no_camera"] = (bpy.ops.framefarm.submit.poll(), blocker())
    scene.camera = camera
    settings = scene.render.image_settings
    if hasattr(settings, "media_type"):
        settings.media_type = "VIDEO"
    settings.file_format = "FFMPEG"
    polls["video"] = (bpy.ops.framefarm.submit.poll(), blocker())
    camera, scene.camera = scene.camera, None
    polls["video_no_camera"] = (bpy.ops.framefarm.submit.poll(), blocker())  # the camera's: a video is fine
    scene.camera = camera
    scene.framefarm.output_format = "PNG"  # the job's format override makes a video scene renderable
    polls["video_as_png"] = (bpy.ops.framefarm.submit.poll(), blocker())
    scene.framefarm.output_format = "SCENE"
    if hasattr(settings, "media_type"):
        settings.media_type = "IMAGE"
    settings.file_format = "PNG"
    st.submitting = True
    polls["in_progress"] = (bpy.ops.framefarm.submit.poll(), blocker())
    st.submitting = False
    ff = scene.framefarm
    ff.use_scene_range, ff.frame_start, ff.frame_end = False, 10, 5
    polls["backwards"] = (bpy.ops.framefarm.submit.poll(), blocker())
    ff.use_scene_range = True
    OUT["polls"] = polls
    step("polls")
    OUT["bad_token_submit"] = submit_and_wait(addon, 60)
    call(bpy.ops.framefarm.test_connection, wait=True)
    OUT["bad_token_connection"] = st.connection
    configure(addon, CONFIG["dead_gateway"], CONFIG["token"])
    call(bpy.ops.framefarm.test_connection, wait=True)
    OUT["dead_connection"] = st.connection
    configure(addon, CONFIG["gateways"], CONFIG["token"])
    call(bpy.ops.framefarm.test_connection, wait=True)
    OUT["good_connection"] = (st.connection_ok, st.connection)
    step("connections")


def scenario_missing(addon: object) -> None:
    """A scene whose texture is missing: refused with the list, then "Submit Anyway"."""
    configure(addon, CONFIG["gateways"], CONFIG["token"])
    bpy.ops.wm.open_mainfile(filepath=CONFIG["scene"])
    bpy.context.scene.framefarm.output_format = CONFIG.get("format", "SCENE")
    st = addon.state.current
    OUT["refused"] = submit_and_wait(addon, 120)
    OUT["missing_files"] = list(st.missing_files)
    step("refused")
    result = call(bpy.ops.framefarm.submit, allow_missing=True, wait=True)
    OUT["anyway"] = {"result": result, "submission": json.loads(json.dumps(st.last_submission)),
                     "missing_files": list(st.missing_files), "messages": list(st.messages)}
    job_id = (st.last_submission.get("job") or {}).get("id")
    if job_id:
        OUT["notified"] = wait(addon, lambda: st.notification.get("job_id") == job_id, CONFIG["timeout"])
        OUT["notification"] = dict(st.notification)
    step("submitted anyway")


def scenario_still(addon: object) -> None:
    """Still mode: what cannot be split is said before submitting; then the current frame, in
    pieces, comes back as one image."""
    configure(addon, CONFIG["gateways"], CONFIG["token"])
    bpy.ops.wm.open_mainfile(filepath=CONFIG["scene"])
    scene = bpy.context.scene
    scene.frame_current = CONFIG["frame"]
    scene.framefarm.mode, scene.framefarm.pieces = "STILL", CONFIG["pieces"]
    scene.render.engine = "BLENDER_EEVEE"
    OUT["eevee_blocker"] = blocker()
    scene.render.engine = "CYCLES"
    scene.cycles.use_denoising = True
    OUT["denoise_blocker"] = blocker()
    scene.cycles.use_denoising = False
    OUT["blocker"] = blocker()
    st = addon.state.current
    OUT["submitted"] = submit_and_wait(addon, 120)
    job_id = (st.last_submission.get("job") or {}).get("id")
    if job_id:
        OUT["notified"] = wait(addon, lambda: st.notification.get("job_id") == job_id, CONFIG["timeout"])
        OUT["notification"] = dict(st.notification)
        OUT["download"] = sorted(bpy.ops.framefarm.download(job_id=job_id, directory=CONFIG["download_dir"],
                                                            wait=True))
    step("still")


def record(addon: object, job_id: str) -> dict:
    return dict(addon.state.current.store.find(job_id)[1])  # type: ignore[attr-defined]


def scenario_artist(addon: object) -> None:
    """Issue 12 in the add-on: an estimate first ("Estimate", then "Render All"), the strip of
    previews filling as frames finish, the flipbook of them, and "Download Frames" writing each
    frame where F12 / Ctrl-F12 would, refusing to overwrite unless asked."""
    configure(addon, CONFIG["gateways"], CONFIG["token"])
    bpy.ops.wm.open_mainfile(filepath=CONFIG["scene"])
    scene = bpy.context.scene
    scene.frame_start, scene.frame_end, scene.frame_step = CONFIG["frames"]
    scene.render.filepath = CONFIG["output"]
    scene.render.fps, scene.render.fps_base = CONFIG["fps"]
    scene.framefarm.chunk = 1
    st = addon.state.current
    result = call(bpy.ops.framefarm.submit, estimate=CONFIG["estimate"], wait=True)
    OUT["submit"] = result
    job_id = (st.last_submission.get("job") or {}).get("id")
    OUT["job_id"] = job_id
    step("submitted")
    if not job_id:
        OUT["messages"] = list(st.messages)
        return
    if CONFIG["estimate"]:
        wait(addon, lambda: record(addon, job_id)["status"] == "estimated" and record(addon, job_id)["estimate"],
             CONFIG["timeout"])
        OUT["estimated"] = record(addon, job_id)
        OUT["estimate_lines"] = addon.gui.estimate_lines(OUT["estimated"]["estimate"]) \
            if OUT["estimated"].get("estimate") else []
        samples = sorted((OUT["estimated"].get("estimate") or {}).get("samples", []))
        wait(addon, lambda: addon.thumbs.frames(job_id) == samples, 30)
        OUT["estimated_thumbs"] = list(addon.thumbs.frames(job_id))
        step("estimated")
        OUT["render_all"] = call(bpy.ops.framefarm.resume, job_id=job_id)
    OUT["notified"] = wait(addon, lambda: st.notification.get("job_id") == job_id, CONFIG["timeout"])
    OUT["done"] = record(addon, job_id)
    step("done")
    total = OUT["done"]["total"]
    OUT["strip_complete"] = wait(addon, lambda: len(addon.thumbs.frames(job_id)) == total, 60)
    OUT["thumbs"] = list(addon.thumbs.frames(job_id))
    cache = addon.thumbs.folder(job_id)
    OUT["cache"] = {p.name: p.read_bytes().hex() for p in sorted(cache.iterdir()) if p.is_file()}
    OUT["strip"] = addon.thumbs.strip(job_id)
    step("strip")
    OUT["flipbook_result"] = call(bpy.ops.framefarm.flipbook, job_id=job_id, wait=True)
    book = dict(st.flipbook)
    image = bpy.data.images.get(book.get("image", ""))
    OUT["flipbook"] = {**book, "source": image.source if image else None,
                       "bytes": [Path(f).read_bytes().hex() for f in book.get("files", [])],
                       "scene_fps": scene.render.fps / scene.render.fps_base}
    step("flipbook")
    targets = {f: scene.render.frame_path(frame=f) for f in range(scene.frame_start, scene.frame_end + 1,
                                                                    scene.frame_step)}
    OUT["targets"] = targets
    OUT["download"] = call(bpy.ops.framefarm.download, job_id=job_id, wait=True)
    OUT["downloaded"] = {f: Path(p).read_bytes().hex() if Path(p).exists() else None for f, p in targets.items()}
    OUT["downloads_state"] = list(st.downloads.get(job_id, []))
    step("downloaded")
    first = Path(targets[min(targets)])
    first.write_bytes(b"the artist's own frame")
    OUT["again"] = call(bpy.ops.framefarm.download, job_id=job_id, wait=True)
    OUT["kept"] = first.read_bytes().hex()
    OUT["overwrite"] = call(bpy.ops.framefarm.download, job_id=job_id, overwrite=True, wait=True)
    OUT["replaced"] = first.read_bytes().hex()
    OUT["messages"] = list(st.messages)
    step("overwrite")


def main() -> None:
    try:
        addon = install()
        {"e2e": scenario_e2e, "checks": scenario_checks, "reopen": scenario_reopen,
         "missing": scenario_missing, "still": scenario_still, "artist": scenario_artist}[CONFIG["scenario"]](addon)
    except Exception:
        OUT["exception"] = traceback.format_exc()
        traceback.print_exc()
    finally:
        Path(CONFIG["out"]).write_text(json.dumps(OUT, indent=1, default=str))


if __name__ == "__main__":  # tests/addon_ui_driver.py imports the helpers above
    main()
