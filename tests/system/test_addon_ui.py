"""The add-on's UI in a real Blender window: the panel, its upload progress, the finish popup.

tests/test_addon.py drives the add-on in background Blender, where nothing is drawn and
no timer fires on its own. Here Debian's Blender 3.4 runs with a window on a virtual X
server (Xvfb, software OpenGL): its event loop runs the add-on's timers, the Properties
editor draws the Framefarm panel, and a finished job pops up. tests/addon_ui_driver.py
submits a scene to a live test farm from inside that window and checks, in Blender, what
was drawn; this test checks its verdict, Blender's stderr and the screenshots it took.

The docs' screenshot of the panel with its thumbnail strip:
FRAMEFARM_SCREENSHOTS=docs/images python -m pytest tests/system/test_addon_ui.py
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
from pathlib import Path

import pytest
from PIL import Image

from farmtools import REPO, require, require_blender, wait_for
from framefarm.common.api import FarmAPI
from framefarm.common.http import Client
from test_addon import addon_zip, user_env  # noqa: F401  (addon_zip is a fixture)

DRIVER = REPO / "tests" / "addon_ui_driver.py"
SCREEN = (1600, 2600)  # tall: the Properties editor shows the add-on panel without scrolling


@pytest.fixture
def xvfb_run() -> str:
    """Checked before the farm starts, so a machine without Xvfb skips at once."""
    require("xauth")  # xvfb-run needs it to let Blender onto the display
    return require("xvfb-run")


def start_blender_window(xvfb_run: str, args: list[str], env: dict[str, str]) -> subprocess.Popen:
    """Blender with a window on a fresh Xvfb display, in a process group of its own."""
    cmd = [xvfb_run, "-a", "-s", f"-screen 0 {SCREEN[0]}x{SCREEN[1]}x24", require_blender(), *args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)


def finish(proc: subprocess.Popen, timeout: float) -> subprocess.CompletedProcess:
    """Its output once it exits; the whole group is killed on a timeout."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        err += f"\n(killed after {timeout:.0f}s)"
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


class HeldPart:
    """One of the farm's parts claimed and kept under lease by the test, as a worker that
    never finishes it would: the job cannot end until `release`. It lets the panel be seen
    between a job's first frame and its last however fast the real worker renders (a warm
    Blender renders ten one-frame parts in about a second, which a panel polling every
    second could miss)."""

    def __init__(self, cluster) -> None:
        self.api = FarmAPI(Client(cluster.urls, cluster.tokens.worker, discover=False, retry_for=30))
        self.worker_id = self.api.register({"name": "holder", "blender_version": "3.4.1"})["id"]
        self.part: dict | None = None
        self.claimed = threading.Event()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._hold, daemon=True)
        self.thread.start()

    def _hold(self) -> None:
        while self.part is None and not self.done.is_set():
            self.part = self.api.claim(self.worker_id, 2)
        self.claimed.set()
        # Heartbeats at the farm's test cadence keep the 4 s lease (clustertools.cluster_env).
        while self.part is not None and not self.done.wait(1):
            self.api.heartbeat(self.worker_id, [{"id": self.part["id"], "token": self.part["token"]}])

    def release(self) -> None:
        self.done.set()
        self.thread.join(timeout=30)
        if self.part is not None:
            self.api.release(self.part["id"], self.part["token"])


def test_panel_progress_and_finish_popup_in_a_window(xvfb_run, cluster, scenes, addon_zip, tmp_path):  # noqa: F811
    ffmpeg = require("ffmpeg")  # the driver's screenshots
    scene = scenes("--frames", "1-10", "--animated")
    cluster.add_gateway()
    out_dir = tmp_path / "ui"
    out_dir.mkdir()
    config = {"scenario": "ui", "zip": str(addon_zip), "gateways": cluster.urls[0], "token": cluster.tokens.client,
              "frames": [1, 10], "chunk": 1, "out_dir": str(out_dir), "ffmpeg": ffmpeg}
    cfg = tmp_path / "ui-config.json"
    cfg.write_text(json.dumps(config))
    env = {**user_env(tmp_path), "TMPDIR": str(tmp_path)}  # Blender's quit.blend lands here, not in /tmp
    # --debug-jobs: Blender logs each job it ran (a thumbnail loaded on a job's thread is checked below).
    args = ["--debug-jobs", "--factory-startup", "--window-geometry", "0", "0", str(SCREEN[0]), str(SCREEN[1]),
            "--python-exit-code", "1", str(scene), "--python", str(DRIVER), "--", str(cfg)]
    holder = HeldPart(cluster)
    proc = start_blender_window(xvfb_run, args, env)
    try:
        # Ten one-frame parts, one held by the test: the real worker renders the other nine, and the
        # job stays running with frames done until the panel was seen so (the driver's screenshot).
        wait_for(lambda: holder.claimed.is_set() or proc.poll() is not None, 120, "the job's first part")
        cluster.add_worker()
        wait_for(lambda: (out_dir / "running.png").exists() or proc.poll() is not None, 120,
                 "the panel to show the running job")
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)  # no Blender, Xvfb or driver outlives a failed wait
        proc.communicate()
        raise
    finally:
        holder.release()
    proc = finish(proc, timeout=150)
    log = proc.stdout[-6000:] + proc.stderr[-6000:]
    crash = "".join(p.read_text(errors="replace") for p in tmp_path.glob("*.crash.txt"))  # Blender's own report
    result = out_dir / "out.json"
    assert result.exists(), f"the driver wrote nothing (exit {proc.returncode}):\n{log}\n{crash}"
    out = json.loads(result.read_text())
    assert "exception" not in out, out["exception"] + "\n" + log
    failed = [name for name, ok in out["checks"].items() if not ok]
    assert not failed, f"{failed}\n{json.dumps({k: out[k] for k in ('draws', 'drawn', 'popups')}, indent=1)}\n{log}"
    assert proc.returncode == 0, log
    assert "Traceback" not in proc.stderr, proc.stderr[-6000:]
    # A thumbnail left to load lazily is read by Blender's 'Load Previews' job on another thread
    # while the panel draws it; Blender 3.4 crashed (segfault) in that race. thumbs.icon loads each
    # one on the main thread before the strip draws it.
    assert "Job 'Load Previews'" not in proc.stdout, log
    popup = next(p for p in out["popups"] if p["title"] == "Framefarm: frames ready")
    assert any(f"{out['job']['total']} frames" in (text or "") for _kind, _arg, text in popup["items"])
    for name, shot in out["screenshots"].items():
        with Image.open(shot["path"]) as im:
            assert im.size == tuple(shot["window"])
            x, y, w, h = shot["area"]
            panel = im.convert("RGB").crop((x, im.height - y - h, x + w, im.height - y))
            assert len(panel.getcolors(maxcolors=1 << 16) or range(1 << 16)) > 20, "the Properties editor is blank"
            if name == "strip" and os.environ.get("FRAMEFARM_SCREENSHOTS"):  # for the docs: the panel alone
                panel.save(Path(os.environ["FRAMEFARM_SCREENSHOTS"]) / "addon-strip.png", optimize=True)
