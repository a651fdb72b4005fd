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
from pathlib import Path

import pytest
from PIL import Image

from farmtools import REPO, require, require_blender
from test_addon import addon_zip, user_env  # noqa: F401  (addon_zip is a fixture)

DRIVER = REPO / "tests" / "addon_ui_driver.py"
SCREEN = (1600, 1000)


@pytest.fixture
def xvfb_run() -> str:
    """Checked before the farm starts, so a machine without Xvfb skips at once."""
    require("xauth")  # xvfb-run needs it to let Blender onto the display
    return require("xvfb-run")


def run_blender_window(xvfb_run: str, args: list[str], env: dict[str, str],
                       timeout: float) -> subprocess.CompletedProcess:
    """Blender with a window on a fresh Xvfb display; the whole group is killed on a timeout."""
    cmd = [xvfb_run, "-a", "-s", f"-screen 0 {SCREEN[0]}x{SCREEN[1]}x24", require_blender(), *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        err += f"\n(killed after {timeout:.0f}s)"
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def test_panel_progress_and_finish_popup_in_a_window(xvfb_run, cluster, scenes, addon_zip, tmp_path):  # noqa: F811
    scene = scenes("--frames", "1-10", "--animated")
    cluster.add_gateway()
    cluster.add_worker()
    out_dir = tmp_path / "ui"
    out_dir.mkdir()
    config = {"scenario": "ui", "zip": str(addon_zip), "gateways": cluster.urls[0], "token": cluster.tokens.client,
              # Ten one-frame parts: the panel must catch the job between its first frame and its
              # last, and a warm Blender renders a two-part job in about a second.
              "frames": [1, 10], "chunk": 1, "out_dir": str(out_dir)}
    cfg = tmp_path / "ui-config.json"
    cfg.write_text(json.dumps(config))
    env = {**user_env(tmp_path), "TMPDIR": str(tmp_path)}  # Blender's quit.blend lands here, not in /tmp
    # --debug-jobs: Blender logs each job it ran (a thumbnail loaded on a job's thread is checked below).
    args = ["--debug-jobs", "--factory-startup", "--window-geometry", "0", "0", str(SCREEN[0]), str(SCREEN[1]),
            "--python-exit-code", "1", str(scene), "--python", str(DRIVER), "--", str(cfg)]
    proc = run_blender_window(xvfb_run, args, env, timeout=150)
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
