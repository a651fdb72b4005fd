"""Helpers for tests that run real parts of the farm (Redis, Blender, gunicorn).

A missing tool skips a test locally; under FRAMEFARM_REQUIRE_ALL=1 (set by CI)
it fails it, so a green CI run never hides an untested part.
"""
from __future__ import annotations

import hashlib
import importlib.util
import io
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import NoReturn

import pytest

REPO = Path(__file__).resolve().parent.parent
MAKE_SCENE = REPO / "scripts" / "make_scene.py"


def skip_or_fail(reason: str) -> NoReturn:
    """The one rule for a test that lacks something it needs (a tool, a package,
    disk space): skip it locally, fail it under FRAMEFARM_REQUIRE_ALL=1 (CI)."""
    if os.environ.get("FRAMEFARM_REQUIRE_ALL") == "1":
        pytest.fail(reason + " (FRAMEFARM_REQUIRE_ALL=1 forbids skipping)")
    pytest.skip(reason)


def require(tool: str) -> str:
    """Path of an executable this test needs."""
    path = shutil.which(tool)
    if path is None:
        skip_or_fail(f"{tool} is not installed")
    return path


def require_module(name: str, pip_name: str) -> None:
    """A Python package this test needs, by its import name."""
    if importlib.util.find_spec(name) is None:
        skip_or_fail(f"{name} is not installed (pip install {pip_name})")


def require_blender() -> str:
    return require("blender")


def make_scene(out: Path, *options: str, script: Path = MAKE_SCENE) -> Path:
    """Generate a scene with scripts/make_scene.py (or another scene `script` taking
    `--output`) and the real Blender."""
    blender = require_blender()
    out.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([blender, "-b", "--factory-startup", "--python-exit-code", "1", "--python",
                           str(script), "--", "--output", str(out), *options],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return out


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def zip_bytes(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


def framefarm_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300,
                  cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the real `framefarm` command line in a child process."""
    return subprocess.run([sys.executable, "-m", "framefarm.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})}, cwd=cwd)


def wait_for(predicate, timeout: float, what: str, interval: float = 0.1):
    """Poll `predicate` until it returns something truthy; fail with `what` on timeout."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")


def check_frames(folder: Path, frames: list[int], size: tuple[int, int], ext: str = ".png") -> None:
    """The folder holds exactly these frames with Blender's names, each a valid image."""
    from PIL import Image

    names = sorted(p.name for p in folder.iterdir())
    assert names == [f"{f:04d}{ext}" for f in frames]
    for name in names:
        with Image.open(folder / name) as im:
            im.load()
            assert im.size == size, name


def processes_mentioning(text: str) -> list[int]:
    """PIDs of live processes whose command line contains `text` (from /proc)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().split(") ", 1)[1][0]
        except (FileNotFoundError, ProcessLookupError, PermissionError, IndexError):
            continue
        if text in cmdline and state != "Z":
            pids.append(int(entry.name))
    return pids


def descendants(pid: int) -> set[int]:
    """All live descendants of a process (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(") ", 1)[1].split()[1])
            except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


def pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"
