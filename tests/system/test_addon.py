"""The Blender add-on, inside real Blender, against a real farm.

Each test builds the add-on zip with packaging/build_addon.py, installs it the way a
user would (legacy add-on in Debian's Blender 3.4, extension in the bpy 5.0 wheel) into
a throwaway user folder, and runs tests/addon_driver.py, which acts and records; the
assertions are made here on what it recorded.
"""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from farmtools import REPO, require_blender, skip_or_fail
from framefarm.gateway.localfarm import free_port

DRIVER = REPO / "tests" / "addon_driver.py"
FRAMES = (3, 10, 2)  # start, end, step: not starting at 1, stepped, the end off the step; two parts of two
EXPECTED = [f"{f:04d}.png" for f in (3, 5, 7, 9)]


@pytest.fixture(scope="module")
def addon_zip(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("addon") / "framefarm_addon.zip"
    subprocess.run([sys.executable, str(REPO / "packaging" / "build_addon.py"), "--output", str(out)],
                   check=True, capture_output=True, timeout=60)
    return out


# The `bpy` wheels the add-on and the worker's bpy back end are tested with, beside Debian's
# Blender 3.4: the LTS releases artists use today and the current one. scripts/test.sh installs
# each into its own environment and names its Python in the variable.
BPY_WHEELS = {"5.0": ("FRAMEFARM_BPY_PYTHON", "5.0.1"), "4.5": ("FRAMEFARM_BPY45_PYTHON", "4.5.15"),
              "4.2": ("FRAMEFARM_BPY42_PYTHON", "4.2.23")}


def bpy_python(version: str = "5.0") -> str:
    """A Python that imports the real `bpy` wheel of `version`: the one its variable names
    (else, for 5.0, this one)."""
    var, pin = BPY_WHEELS[version]
    candidates = [os.environ.get(var)] + ([sys.executable] if version == "5.0" else [])
    for python in filter(None, candidates):
        probe = subprocess.run([python, "-c", "import bpy; print(bpy.app.version_string)"],
                               capture_output=True, text=True, timeout=60)
        if probe.returncode == 0 and probe.stdout.startswith(version + "."):
            return python
    skip_or_fail(f"the bpy {version} wheel is not installed (pip install bpy=={pin} into a venv, and set {var})")


def user_env(tmp: Path) -> dict[str, str]:
    """Blender's environment with a fresh user folder, so the real user's prefs are never touched."""
    home = tmp / "blender-user"
    env = {**os.environ, "BLENDER_USER_CONFIG": str(home / "config"), "BLENDER_USER_SCRIPTS": str(home / "scripts"),
           "BLENDER_USER_DATAFILES": str(home / "datafiles"), "BLENDER_USER_EXTENSIONS": str(home / "extensions"),
           "BLENDER_USER_RESOURCES": str(home)}
    for var in ("FRAMEFARM_GATEWAYS", "FRAMEFARM_TOKEN", "VIRTUAL_ENV"):
        env.pop(var, None)
    # As an artist starts Blender: with no virtual environment on PATH. Debian's Blender finds
    # its Python's standard library through the first `python3` on PATH, and the tests' venv
    # (made from another Python 3.11) would lend it a foreign one, whose `_ssl` it cannot load.
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if p and not (Path(p).parent / "pyvenv.cfg").exists())
    return env


def run_driver(blender: str, config: dict, tmp: Path, timeout: float = 240) -> dict:
    """Run one scenario in a fresh user folder."""
    env = user_env(tmp)
    config = {**config, "out": str(tmp / f"{config['scenario']}-out.json")}
    cfg = tmp / f"{config['scenario']}-config.json"
    cfg.write_text(json.dumps(config))
    if blender.startswith("bpy"):  # "bpy" (5.0) or "bpy-4.2", "bpy-4.5"
        cmd = [bpy_python(blender.partition("-")[2] or "5.0"), str(DRIVER), str(cfg)]
    else:
        cmd = [require_blender(), "-b", "--factory-startup", "--python-exit-code", "1", "--python", str(DRIVER),
               "--", str(cfg)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=tmp)
    log = proc.stdout[-4000:] + proc.stderr[-4000:]
    assert Path(config["out"]).exists(), f"the driver wrote nothing (exit {proc.returncode}):\n{log}"
    out = json.loads(Path(config["out"]).read_text())
    assert "exception" not in out, out["exception"] + "\n" + log
    assert proc.returncode == 0, f"Blender exited with {proc.returncode}:\n{log}"
    out["log"] = log
    return out


def launcher_for(version: str, folder: Path) -> Path:
    """The worker's bpy back end: a Blender-compatible launcher around the wheel of `version`."""
    from framefarm.worker.bpy_backend import write_launcher

    return write_launcher(bpy_python(version), folder / f"launcher-{version}" / "blender-bpy")


def dead_gateway() -> str:
    return f"http://127.0.0.1:{free_port()}"


def check_artist_file(out: dict, scene: Path) -> None:
    before = out["before"]
    assert before["filepath"] == str(scene)
    assert before["packed"] == []
    assert ("Checker", "//textures/tex.png") in [tuple(i) for i in before["images"]]
    for moment in ("after_submit", "after"):
        assert out[moment] == before, f"the artist's file changed ({moment})"


@pytest.mark.parametrize("blender,render", [("3.4", True), ("bpy", True), ("bpy", False), ("bpy-4.2", True),
                                            ("bpy-4.5", True)],
                         ids=["blender-3.4", "bpy-5.0", "bpy-5.0-no-capable-worker", "bpy-4.2", "bpy-4.5"])
def test_submit_render_notify_download(blender, render, cluster, scenes, addon_zip, tmp_path):
    scene = scenes("--frames", "1-10", "--animated")
    cluster.add_gateway()
    cluster.add_worker()  # Debian's Blender 3.4: it cannot open what a later Blender saves
    if blender != "3.4" and render:  # a worker with the add-on's Blender: the scene it saves needs that version
        cluster.add_worker(blender=str(launcher_for(blender.partition("-")[2] or "5.0", tmp_path)))
    # Registered before the add-on submits: the job's waiting reason names the live workers.
    cluster.wait_registered(len(cluster.workers))
    config = {"scenario": "e2e", "zip": str(addon_zip), "scene": str(scene), "frames": FRAMES,
              # a dead gateway first: the add-on must fail over to the live one
              "gateways": f"{dead_gateway()}, {cluster.urls[0]}", "token": cluster.tokens.client,
              "timeout": 150, "expect_render": render, "link_zip": str(tmp_path / "link.zip"),
              "download_dir": str(tmp_path / "frames")}
    out = run_driver(blender, config, tmp_path)
    assert out["enabled"] and out["poll"], out["log"]
    first = out["first"]
    assert first["finished"], first["messages"]
    job = first["submission"]["job"]
    assert job["frames"]["total"] == len(EXPECTED)
    # Saved by the add-on's Blender: only a worker of that version or later may render it.
    assert job["blender_version"] == (blender.partition("-")[2] or "5.0" if blender != "3.4" else "3.4")
    assert "tex.png" in first["submission"]["uploaded"]
    assert scene.name in first["submission"]["uploaded"]
    check_artist_file(out, scene)
    if render:
        assert out["notified"], out["log"]
        note = out["notification"]
        assert note["status"] == "done" and note["frames"] == len(EXPECTED)
        with zipfile.ZipFile(tmp_path / "link.zip") as zf:
            linked = {name: zf.read(name) for name in zf.namelist()}
        assert sorted(linked) == EXPECTED
        assert out["download"] == ["FINISHED"]
        got = sorted(p.name for p in (tmp_path / "frames").iterdir())
        assert got == EXPECTED
        for name in EXPECTED:
            data = (tmp_path / "frames" / name).read_bytes()
            assert data == linked[name]
            assert Image.open(io.BytesIO(data)).size == (48, 48)
    else:
        waiting = out["waiting"]
        assert waiting["blender"] == "5.0"
        assert "saved by Blender 5.0" in waiting["waiting"], waiting
        assert out["after_pause"]["paused"] is True and out["after_pause"]["waiting"].startswith("paused")
        assert out["after_resume"]["paused"] is False
        assert out["after_cancel"]["status"] == "cancelled"
    # Resubmitting the same scene sends no asset again (only the .blend copy may differ).
    second = out["second"]
    assert second["finished"], second["messages"]
    assert "tex.png" not in second["submission"]["uploaded"]
    assert len(out["store"]) == 2
    # The job list survives restarting Blender (same user folder, a new process).
    reopened = run_driver(blender, {**config, "scenario": "reopen"}, tmp_path)
    assert [r["id"] for r in reopened["store"]] == [r["id"] for r in out["store"]]
    assert reopened["store"][-1]["status"] == ("done" if render else "cancelled")


@pytest.mark.parametrize("blender", ["3.4", "bpy"])
def test_poll_messages_and_clear_errors(blender, cluster, scenes, addon_zip, tmp_path):
    scene = scenes("--frames", "1-10", "--animated")
    cluster.add_gateway()
    config = {"scenario": "checks", "zip": str(addon_zip), "scene": str(scene), "gateways": cluster.urls[0],
              "token": cluster.tokens.client, "bad_token": "ff_c_not-a-real-token",
              "dead_gateway": dead_gateway()}
    out = run_driver(blender, config, tmp_path)
    polls = out["polls"]
    assert polls["no_gateway"] == [False, polls["no_gateway"][1]] and "No farm gateway" in polls["no_gateway"][1]
    assert polls["ready"] == [True, None]
    assert polls["no_camera"][0] is False and "no active camera" in polls["no_camera"][1]
    # A video output is no reason any more: the farm makes the movie (test_movies.py).
    assert polls["video"] == [True, None]
    assert polls["video_no_camera"][0] is False and "no active camera" in polls["video_no_camera"][1]
    assert "video" not in polls["video_no_camera"][1]
    assert polls["video_as_png"] == [True, None]
    assert polls["in_progress"][0] is False and "in progress" in polls["in_progress"][1]
    assert polls["backwards"][0] is False and "the range 10-5 ends before it starts" in polls["backwards"][1]
    if "offline" in polls:
        assert polls["offline"][0] is False and "Online access" in polls["offline"][1]
    bad = out["bad_token_submit"]
    assert bad["finished"] and not bad["submission"]
    assert any("refused the access token" in text for _level, text in bad["messages"]), bad["messages"]
    assert not any("Traceback" in text for _level, text in bad["messages"])
    assert "refused the access token" in out["bad_token_connection"]
    assert out["dead_connection"].startswith("Cannot reach the farm")
    assert out["good_connection"][0] is True, out["good_connection"]


def test_missing_texture_lists_it_then_submit_anyway_renders(cluster, addon_zip, tmp_path):
    """Issue 15 item 2 in the add-on: the refusal lists the missing file with its data-block, and
    "Submit Anyway" (the operator's allow_missing) renders without it, as Blender does; the
    job's format override (File Format) is sent too."""
    from farmtools import make_scene

    scene = make_scene(tmp_path / "scene" / "scene.blend", "--frames", "1-2",
                       "--texture", str(tmp_path / "scene" / "textures" / "tex.png"))
    (tmp_path / "scene" / "textures" / "tex.png").unlink()
    cluster.add_gateway()
    cluster.add_worker()
    config = {"scenario": "missing", "zip": str(addon_zip), "scene": str(scene), "gateways": cluster.urls[0],
              "token": cluster.tokens.client, "timeout": 150, "format": "JPEG"}
    out = run_driver("3.4", config, tmp_path)
    refused = out["refused"]
    assert refused["finished"] and not refused["submission"], refused
    assert out["missing_files"] == ['//textures/tex.png (used by image "Checker" in scene.blend)']
    assert any("1 file(s) that do not exist" in text for _level, text in refused["messages"])
    assert "Traceback" not in out["log"]
    anyway = out["anyway"]
    assert anyway["result"] == ["FINISHED"], anyway
    assert anyway["missing_files"] == []
    job = anyway["submission"]["job"]
    assert job["format"] == "JPEG"
    assert out["notified"], out["log"]
    assert out["notification"]["status"] == "done", out["notification"]


def test_still_mode_splits_the_current_frame_and_brings_back_one_image(cluster, addon_zip, tmp_path):
    """Issue 13 in the add-on: Still mode says what cannot be split before anything is sent, then
    the current frame goes to the farm in pieces and comes back as one image, notified as any job."""
    from farmtools import make_scene

    scene = make_scene(tmp_path / "scene" / "scene.blend", "--frames", "1-3", "--size", "64")
    cluster.add_gateway()
    cluster.add_worker(slots=2)
    config = {"scenario": "still", "zip": str(addon_zip), "scene": str(scene), "gateways": cluster.urls[0],
              "token": cluster.tokens.client, "timeout": 150, "frame": 2, "pieces": 2,
              "download_dir": str(tmp_path / "still")}
    out = run_driver("3.4", config, tmp_path)
    assert "Still mode splits Cycles renders only" in out["eevee_blocker"]
    assert out["denoise_blocker"] is None  # the farm merges and denoises it, or refuses it at submit
    assert out["blocker"] is None
    job = out["submitted"]["submission"]["job"]
    assert job["still"] == {"frame": 2, "pieces": 2, "pieces_done": 0} and job["parts"]["total"] == 2
    assert out["notified"] and out["notification"]["status"] == "done", out["log"]
    assert out["download"] == ["FINISHED"]
    assert [p.name for p in (tmp_path / "still").iterdir()] == ["0002.png"]
    assert Image.open(tmp_path / "still" / "0002.png").size == (64, 64)


# Debian's Blender and the newest bpy; 4.2 and 4.5 pass too (add them here to check), and the e2e test
# above installs, submits and downloads on every version.
@pytest.mark.parametrize("blender", ["3.4", "bpy"], ids=["blender-3.4", "bpy-5.0"])
def test_estimate_strip_flipbook_and_frames_where_a_local_render_puts_them(blender, cluster, addon_zip, tmp_path):
    """Issue 12 in the add-on: "Estimate" renders the sample frames and shows what the rest takes,
    "Render All" renders the rest; the strip's previews land in the job's cache folder (small
    JPEGs, never the frames), the flipbook plays them in order at the scene's rate, and
    "Download Frames" writes frame N to scene.render.frame_path(frame=N), keeping an existing
    frame unless Overwrite is on."""
    from farmtools import make_scene

    scene = make_scene(tmp_path / "scene" / "scene.blend", "--frames", "1-5", "--size", "64", "--animated")
    cluster.add_gateway()
    cluster.add_worker()
    if blender != "3.4":  # the scene the add-on saves needs a worker of its Blender
        cluster.add_worker(blender=str(launcher_for(blender.partition("-")[2] or "5.0", tmp_path)))
    cluster.wait_registered(len(cluster.workers))
    frames = (2, 8, 2)  # 2, 4, 6, 8: stepped, so the flipbook's numbering is not the frames'
    config = {"scenario": "artist", "zip": str(addon_zip), "scene": str(scene), "gateways": cluster.urls[0],
              "token": cluster.tokens.client, "timeout": 150, "frames": frames, "fps": [24000, 1001],
              "output": "//render/shot010_###", "estimate": True}
    out = run_driver(blender, config, tmp_path, timeout=400)
    assert out["job_id"], out.get("messages")
    wanted = list(range(frames[0], frames[1] + 1, frames[2]))
    est = out["estimated"]["estimate"]
    assert out["estimated"]["status"] == "estimated" and len(est["samples"]) == 3, est
    assert est["samples"][0] == 2 and est["samples"][-1] == 8 and set(est["samples"]) <= set(range(2, 9, 2)), est
    assert out["estimated_thumbs"] == sorted(est["samples"]), "the strip shows the samples while it waits"
    assert 0 < est["seconds_per_frame"]["min"] <= est["seconds_per_frame"]["mean"] <= est["seconds_per_frame"]["max"]
    assert any("sample frame(s)" in line for line in out["estimate_lines"]), out["estimate_lines"]
    assert out["render_all"] == ["FINISHED"]
    assert out["notified"] and out["done"]["status"] == "done", out["log"]
    # The strip: every frame's preview in the job's cache folder, small JPEGs only.
    assert out["strip_complete"] and out["thumbs"] == wanted, out["thumbs"]
    cache = {name: bytes.fromhex(data) for name, data in out["cache"].items()}
    assert sorted(cache) == [f"{f:07d}.jpg" for f in wanted]
    for data in cache.values():
        with Image.open(io.BytesIO(data)) as im:
            assert im.format == "JPEG" and im.size[0] <= 64
    assert [frame for frame, _icon in out["strip"]] == wanted
    # The flipbook: the previews as one image sequence, in frame order, at the scene's rate.
    book = out["flipbook"]
    assert out["flipbook_result"] == ["FINISHED"] and book["source"] == "SEQUENCE"
    assert book["frames"] == wanted and abs(book["fps"] - 24000 / 1001) < 1e-9 and book["scene_fps"] == book["fps"]
    assert [bytes.fromhex(b) for b in book["bytes"]] == [cache[f"{f:07d}.jpg"] for f in wanted]
    assert [Path(p).name for p in book["files"]] == [f"{i:06d}.jpg" for i in range(1, len(wanted) + 1)]
    # Download Frames: where Blender's own render writes (//render/shot010_###: three digits).
    targets = {int(f): Path(p) for f, p in out["targets"].items()}
    assert targets == {f: tmp_path / "scene" / "render" / f"shot010_{f:03d}.png" for f in wanted}
    assert out["download"] == ["FINISHED"]
    for f, data in out["downloaded"].items():
        assert data is not None, f"frame {f} was not written to {targets[int(f)]}"
        with Image.open(io.BytesIO(bytes.fromhex(data))) as im:
            assert im.format == "PNG" and im.size == (64, 64)
    assert "exist already" in out["again"] and "Overwrite" in out["again"], out["again"]
    assert bytes.fromhex(out["kept"]) == b"the artist's own frame"
    assert out["overwrite"] == ["FINISHED"]
    assert bytes.fromhex(out["replaced"]) == bytes.fromhex(out["downloaded"][str(wanted[0])])
    assert not [m for m in out["messages"] if m[0] == "ERROR"], out["messages"]
