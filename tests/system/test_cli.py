"""The `framefarm` command line: usage errors, tokens, and `framefarm up` as a user runs it."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from farmtools import check_frames, descendants, framefarm_cli, pid_alive, require, require_blender, wait_for
from framefarm.gateway import auth, keys


@pytest.mark.parametrize("args, message", [
    (["--frames", "10-1"], "ends before it starts"),
    (["--frames", "a-b"], "cannot read frames"),
    (["--frames", "1-10", "--step", "0"], "step must be 1 or more"),
    (["--frames", "1-10", "--step", "-2"], "step must be 1 or more"),
    (["--frames", "1-10", "--chunk", "0"], "--chunk must be 1 or more"),
    (["--frames", "1-10", "--step", "x"], "invalid int value"),
])
def test_bad_usage_exits_2_with_a_clear_message(tmp_path, args, message):
    scene = tmp_path / "shot.blend"
    scene.write_bytes(b"BLENDER-v304")
    res = framefarm_cli("submit", str(scene), *args, env={"FRAMEFARM_HOME": str(tmp_path)})
    assert res.returncode == 2
    assert message in res.stderr
    assert "Traceback" not in res.stderr


def test_missing_file_and_non_blend_exit_2(tmp_path):
    res = framefarm_cli("submit", str(tmp_path / "nope.blend"), "--frames", "1", env={"FRAMEFARM_HOME": str(tmp_path)})
    assert res.returncode == 2 and "no such file" in res.stderr
    png = tmp_path / "image.blend"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    res = framefarm_cli("submit", str(png), "--frames", "1", env={"FRAMEFARM_HOME": str(tmp_path)})
    assert res.returncode == 2 and "not a .blend file" in res.stderr


def test_unreachable_farm_exits_1_without_a_traceback(tmp_path, scenes):
    scene = scenes("--no-texture")
    res = framefarm_cli("submit", str(scene), "--frames", "1", env={
        "FRAMEFARM_HOME": str(tmp_path), "FRAMEFARM_GATEWAYS": "http://127.0.0.1:9", "FRAMEFARM_TOKEN": "x",
        "FRAMEFARM_RETRY_FOR": "2"}, timeout=60)
    assert res.returncode == 1
    assert "no gateway answered" in res.stderr and "Traceback" not in res.stderr


def test_token_create_prints_the_token_alone_and_stores_only_its_hash(redis_server, redis_client):
    res = framefarm_cli("token", "create", "--role", "worker", env={"FRAMEFARM_REDIS_URL": redis_server.url})
    assert res.returncode == 0, res.stderr
    token = res.stdout.strip()
    assert res.stdout == token + "\n"
    assert redis_client.hget(keys.token(auth.digest(token)), "role") == b"worker"
    assert not any(token.encode() in redis_client.dump(k) for k in redis_client.keys("*"))


def test_up_runs_the_farm_and_stops_everything_it_started(short_tmp, scenes, tmp_path):
    require("redis-server")
    require_blender()
    scene = scenes("--animated")
    home = short_tmp / "uphome"
    env = {**os.environ, "FRAMEFARM_HOME": str(home)}
    from framefarm.gateway.localfarm import free_port

    port = free_port()
    up = subprocess.Popen([sys.executable, "-m", "framefarm.cli", "up", "--port", str(port),
                           "--workers", "1", "--device", "CPU"], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    try:
        assert "Framefarm is up" in up.stdout.readline()
        started = descendants(up.pid)
        assert len(started) >= 4  # redis, gunicorn master and its workers, a worker agent
        out = tmp_path / "frames"
        # No flags: `up` wrote the client config for this user.
        res = framefarm_cli("submit", str(scene), "--frames", "1-6", "--wait", "--output", str(out),
                            env={"FRAMEFARM_HOME": str(home)})
        assert res.returncode == 0, res.stderr
        check_frames(out, list(range(1, 7)), (48, 48))
        # Its worker was left to `--slots auto`: two parts at once where there are two cores to overlap.
        slots = 2 if (os.cpu_count() or 1) >= 2 else 1
        assert f"device CPU, {slots} slot(s)" in (home / "logs" / "worker-0.log").read_text()
        assert oct((home / "client.json").stat().st_mode & 0o777) == "0o600"
    finally:
        up.send_signal(signal.SIGTERM)
        code = up.wait(timeout=60)
    assert code == 0
    assert not [p for p in started if pid_alive(p)]

    # A restart keeps the jobs (Redis with AOF) and the client's token. With two local workers,
    # each takes one slot: two workers already render two parts at once.
    up = subprocess.Popen([sys.executable, "-m", "framefarm.cli", "up", "--port", str(port),
                           "--workers", "2"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert "Framefarm is up" in up.stdout.readline()
        res = framefarm_cli("jobs", "--json", env={"FRAMEFARM_HOME": str(home)})
        assert res.returncode == 0, res.stderr
        assert [j["status"] for j in json.loads(res.stdout)] == ["done"]

        def registered(n: int) -> str:
            lines = [line for line in (home / "logs" / f"worker-{n}.log").read_text().splitlines()
                     if "registered as" in line]
            return lines[-1] if len(lines) > (1 if n == 0 else 0) else ""  # worker-0's first run logged one

        wait_for(lambda: registered(0) and registered(1), 60, "both workers to register")
        assert all(", 1 slot(s)" in registered(n) for n in (0, 1)), (registered(0), registered(1))
    finally:
        up.send_signal(signal.SIGINT)
        assert up.wait(timeout=60) == 0
