"""Issue 9, item 3: a .blend must not read the worker's disk, see its secrets or reach the network.

Real processes throughout: a gunicorn gateway, redis-server, `framefarm worker` with
Debian's Blender 3.4 under bubblewrap, scenes made by the real Blender. Each attack also
runs once with `--sandbox off`, where it succeeds: that shows the test would catch a
sandbox that lets it through. Cycles renders an image it cannot read magenta.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from farmtools import descendants, framefarm_cli, require, require_blender, sha256, skip_or_fail, wait_for
from framefarm.common.frameset import FrameRange
from framefarm.gateway import keys
from framefarm.worker import sandbox as sandboxing
from framefarm.worker.bpy_backend import write_launcher
from framefarm.worker.render import probe_blender, render_frames
from sandboxtools import GREEN, MAGENTA, YELLOW, attack_scene, farm_api, png, rendered, submit


@pytest.fixture(params=["auto", "off"])
def mode(request) -> str:
    """The worker's --sandbox: the default (auto, which must find bwrap here), or off."""
    if request.param == "auto":
        require("bwrap")
    return request.param


def test_a_scene_sees_only_its_own_folder(cluster, redis_client, tmp_path, mode):
    cluster.add_gateway()
    cluster.add_worker(extra=["--sandbox", mode])
    cluster.wait_registered(1)
    (wid,) = redis_client.zrange(keys.WORKERS, 0, -1)
    assert redis_client.hget(keys.worker(wid.decode()), "sandbox") == (b"bwrap" if mode == "auto" else b"off")
    victim, attacker = farm_api(cluster, cluster.tokens.client), farm_api(cluster, cluster.tokens.client2)

    # A normal textured scene still renders its texture.
    texture = tmp_path / "victim" / "tex.png"
    tex_sha = sha256(png(texture, GREEN))
    scene = attack_scene(tmp_path / "victim" / "scene.blend", "--image", "//tex.png")
    job = submit(victim, {"scene.blend": scene, "tex.png": texture}, "scene.blend")
    assert rendered(victim, job, tmp_path / "out") == GREEN

    # An image at an absolute path outside the scene folder: a file on the worker's disk.
    secret = png(tmp_path / "secret" / "key.png", YELLOW)
    assert secret
    absolute = attack_scene(tmp_path / "abs" / "scene.blend", "--image", str(tmp_path / "secret" / "key.png"))
    job = submit(attacker, {"scene.blend": absolute}, "scene.blend")
    assert rendered(attacker, job, tmp_path / "out") == (MAGENTA if mode == "auto" else YELLOW)

    # `//../..` out of the scene folder (cache/scenes/<key>/) into the cache's files: the
    # victim's texture, by its hash.
    assert (cluster.root / "worker-0" / "cache" / "files" / tex_sha).is_file()
    climbing = attack_scene(tmp_path / "climb" / "scene.blend", "--image", f"//../../files/{tex_sha}")
    job = submit(attacker, {"scene.blend": climbing}, "scene.blend")
    assert rendered(attacker, job, tmp_path / "out") == (MAGENTA if mode == "auto" else GREEN)


def test_blender_runs_without_the_workers_token(cluster, tmp_path):
    """The worker holds FRAMEFARM_TOKEN in its environment; the Blender it starts must not."""
    require("bwrap")
    cluster.add_gateway()
    worker = cluster.add_worker()
    cluster.wait_registered(1)
    api = farm_api(cluster, cluster.tokens.client)
    slow = attack_scene(tmp_path / "slow" / "scene.blend", "--samples", "1000000", "--size", "64")
    job = submit(api, {"scene.blend": slow}, "scene.blend")
    found = wait_for(lambda: [pid for pid in descendants(worker.pid) if _exe(pid) == "blender"], 60,
                     "the worker's Blender to start")
    environ = Path(f"/proc/{found[0]}/environ").read_bytes().split(b"\0")
    assert cluster.tokens.worker.encode() in Path(f"/proc/{worker.pid}/environ").read_bytes()
    assert not [v for v in environ if b"FRAMEFARM" in v or cluster.tokens.worker.encode() in v]
    names = {v.split(b"=")[0].decode() for v in environ if v}
    assert "HOME" in names and names <= {*sandboxing.clean_env(), "PWD"}  # bwrap sets PWD
    api.cancel(job)


def _exe(pid: int) -> str:
    try:
        return os.path.basename(os.readlink(f"/proc/{pid}/exe"))
    except OSError:
        return ""


def test_the_sandbox_command_has_a_clean_environment(monkeypatch):
    """The builder the worker uses, run for real with `env` in place of Blender."""
    bwrap = require("bwrap")
    monkeypatch.setenv("FRAMEFARM_TOKEN", "wkr-secret-token")
    cmd = sandboxing.Sandbox(bwrap).command(["env"])
    assert "wkr-secret-token" not in " ".join(cmd) and "--clearenv" in cmd
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=sandboxing.clean_env())
    assert done.returncode == 0, done.stderr
    seen = dict(line.split("=", 1) for line in done.stdout.splitlines())
    assert "FRAMEFARM_TOKEN" not in seen and "wkr-secret-token" not in done.stdout
    assert seen["HOME"] == "/tmp" and set(seen) <= {*sandboxing.clean_env(), "PWD"}


def test_no_network_inside_the_sandbox():
    """A listener on this machine's loopback is out of reach, and only a loopback of its own exists."""
    bwrap = require("bwrap")
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        probe = (f"import socket\ntry:\n    socket.create_connection(('127.0.0.1', {port}), timeout=5)\n"
                 "    print('CONNECTED')\nexcept OSError as e:\n    print('REFUSED', e)\n"
                 "print('INTERFACES', sorted(name for _, name in socket.if_nameindex()))\n")
        outside = subprocess.run(["/usr/bin/python3", "-c", probe], capture_output=True, text=True, timeout=30)
        inside = subprocess.run(sandboxing.Sandbox(bwrap).command(["/usr/bin/python3", "-c", probe]),
                                capture_output=True, text=True, timeout=30)
    assert "CONNECTED" in outside.stdout  # the probe can tell
    assert "REFUSED" in inside.stdout, inside.stdout + inside.stderr
    assert "INTERFACES ['lo']" in inside.stdout


@pytest.fixture(params=["no bwrap", "a Blender that needs a file outside"])
def unsandboxable(request, tmp_path) -> tuple[dict[str, str], str, str]:
    """A machine where the sandbox cannot run Blender: (environment, --blender, the problem)."""
    blender = require_blender()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    env = {"FRAMEFARM_TOKEN": "x", "FRAMEFARM_HOME": str(tmp_path / "home")}
    if request.param == "no bwrap":  # a PATH with Blender and without bwrap
        (bin_dir / "blender").symlink_to(blender)
        return {**env, "PATH": str(bin_dir)}, "blender", "bwrap (bubblewrap) is not installed"
    require("bwrap")
    needed = tmp_path / "licence.key"  # as a site's Blender wrapper might read, outside the sandbox
    needed.write_text("ok")
    wrapper = bin_dir / "blender-site"
    wrapper.write_text(f"#!/bin/sh\ncat {needed} >/dev/null || exit 3\nexec {blender} \"$@\"\n")
    wrapper.chmod(0o755)
    return env, str(wrapper), "Blender does not start in the sandbox"


def test_where_the_sandbox_cannot_run_required_refuses_and_auto_warns(unsandboxable, tmp_path):
    env, blender, problem = unsandboxable
    args = ["worker", "--blender", blender, "--gateway", "http://127.0.0.1:9", "--workdir", str(tmp_path / "w")]
    done = framefarm_cli(*args, "--sandbox", "required", env=env, timeout=120)
    assert done.returncode == 1
    assert f"--sandbox required, but {problem}" in done.stderr
    with subprocess.Popen([sys.executable, "-m", "framefarm.cli", *args, "--sandbox", "auto"],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env={**os.environ, **env}) as proc:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:  # read until the warning's last line, or the end
            lines.append(line)
            if "UNSANDBOXED" in line:
                break
        proc.send_signal(signal.SIGTERM)
    assert any(f"NO SANDBOX: {problem}" in line for line in lines), "".join(lines)


def test_the_bpy_back_end_is_sandboxed_too(tmp_path):
    """The bpy wheel's launcher (its Python and the wheel's venv bound read-only) under bwrap:
    a textured scene renders, an image outside the scene folder does not."""
    bwrap = require("bwrap")
    python = os.environ.get("FRAMEFARM_BPY_PYTHON")
    if not python:
        skip_or_fail("FRAMEFARM_BPY_PYTHON is not set (scripts/test.sh installs the bpy wheel)")
    launcher = write_launcher(python, tmp_path / "bin" / "blender-bpy")
    box = sandboxing.Sandbox(bwrap)
    info = probe_blender(str(launcher), box)
    assert info.version >= 402
    png(tmp_path / "scene" / "tex.png", GREEN)
    png(tmp_path / "secret.png", YELLOW)
    textured = attack_scene(tmp_path / "scene" / "textured.blend", "--image", "//tex.png")
    outside = attack_scene(tmp_path / "scene" / "outside.blend", "--image", str(tmp_path / "secret.png"))
    from PIL import Image

    for scene, colour in ((textured, GREEN), (outside, MAGENTA)):
        frames = render_frames(info, scene, FrameRange(1, 1), tmp_path / scene.stem, sandbox=box)
        with Image.open(frames[0]) as im:
            assert im.convert("RGB").getpixel((8, 8)) == colour, scene.name
