"""Workers with no Blender of their own run the build the farm publishes (`--blender farm`).

The build here is a tarball the test makes from the installed Blender: a folder, as Blender's
own tarballs have, whose `blender` notes each run in a file and then runs /usr/bin/blender
(the real one is 300 MB; what is under test is publishing, fetching, the SHA-256 check,
unpacking and running what was unpacked). Publishing goes through the real CLI into the
cluster's storage and Redis; the workers are real `framefarm worker` processes.
"""
from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

from farmtools import check_frames, framefarm_cli, require, require_blender, sha256, wait_for
from framefarm.gateway import keys

TOP = "blender-3.4.1-linux-x64"


def wrapper_build(path: Path, runs: Path) -> Path:
    blender = require_blender()
    script = f'#!/bin/sh\necho "$$" >> "{runs}"\nexec "{blender}" "$@"\n'.encode()
    with tarfile.open(path, "w:gz") as tar:
        for name, data, mode in ((f"{TOP}/blender", script, 0o755), (f"{TOP}/readme.html", b"<p>test build</p>", 0o644)):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    return path


def publish(cluster, tarball: Path):
    return framefarm_cli("blender", "publish", str(tarball), "--version", "3.4.1", env={
        "FRAMEFARM_REDIS_URL": cluster.redis.url, "FRAMEFARM_STORAGE": f"file://{cluster.root / 'storage'}"})


def registered(cluster) -> int:
    return cluster.redis.client().zcard(keys.WORKERS)


def test_a_worker_fetches_checks_and_renders_with_the_farms_blender(cluster, scenes, tmp_path):
    runs = tmp_path / "runs"
    tarball = wrapper_build(tmp_path / f"{TOP}.tar.gz", runs)
    res = publish(cluster, tarball)
    sha = sha256(tarball.read_bytes())
    assert res.returncode == 0, res.stderr
    assert sha in res.stdout
    assert (cluster.root / "storage" / "blender" / sha / tarball.name).read_bytes() == tarball.read_bytes()

    cluster.add_gateway()
    # Unsandboxed: the build notes each run in the test's folder, which a sandboxed Blender cannot
    # write (test_the_farms_blender_renders_in_the_sandbox covers the sandbox).
    worker = cluster.add_worker(blender="farm", extra=["--sandbox", "off"])
    wait_for(lambda: registered(cluster) == 1 or not worker.alive(), 90, "the worker to register")
    assert worker.alive(), worker.tail(30)
    log = worker.log_path.read_text()
    assert f"the farm's Blender 3.4.1 is verified (sha256 {sha})" in log
    exe = cluster.root / "worker-0" / "blender" / sha / TOP / "blender"
    assert exe.is_file() and not list((cluster.root / "worker-0" / "blender").glob(".*"))
    probes = len(runs.read_text().split())
    assert probes >= 1  # the worker learnt its Blender's version by running the unpacked build

    out = tmp_path / "frames"
    res = framefarm_cli("submit", str(scenes("--animated", "--size", "32")), "--frames", "1-2", "--wait",
                        "--output", str(out), "--json", env=cluster.client_env())
    assert res.returncode == 0, res.stderr + cluster.logs()
    assert json.loads(res.stdout)["status"] == "done"
    check_frames(out, [1, 2], (32, 32))
    assert len(runs.read_text().split()) > probes, "the frames were not rendered by the farm's build"


def test_the_farms_blender_renders_in_the_sandbox(cluster, scenes, tmp_path):
    require("bwrap")
    tarball = wrapper_build(tmp_path / f"{TOP}.tar.gz", tmp_path / "runs")
    assert publish(cluster, tarball).returncode == 0
    cluster.add_gateway()
    worker = cluster.add_worker(blender="farm", extra=["--sandbox", "required"])
    # Its own log line, not the farm's count: the gateway counts the worker before the worker logs it.
    wait_for(lambda: "registered as" in worker.log_path.read_text() or not worker.alive(), 90,
             "the worker to register")
    assert worker.alive(), worker.tail(30)
    assert "sandbox bwrap" in worker.log_path.read_text()
    out = tmp_path / "frames"
    res = framefarm_cli("submit", str(scenes("--animated", "--size", "32")), "--frames", "1", "--wait",
                        "--output", str(out), "--json", env=cluster.client_env())
    assert res.returncode == 0, res.stderr + cluster.logs()
    check_frames(out, [1], (32, 32))


def test_a_worker_refuses_a_build_that_does_not_match_its_checksum(cluster, tmp_path):
    runs = tmp_path / "runs"
    cluster.add_gateway()
    first = cluster.add_worker(blender="farm")  # nothing published yet
    wait_for(lambda: not first.alive(), 60, "the worker to give up")
    assert first.proc.returncode == 1
    assert "has not published a Blender build" in first.log_path.read_text()

    tarball = wrapper_build(tmp_path / f"{TOP}.tar.gz", runs)
    assert publish(cluster, tarball).returncode == 0
    stored = cluster.root / "storage" / "blender" / sha256(tarball.read_bytes()) / tarball.name
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped bit of rot in storage
    stored.write_bytes(bytes(data))

    worker = cluster.add_worker(blender="farm")
    wait_for(lambda: not worker.alive(), 60, "the worker to refuse the build")
    assert worker.proc.returncode == 1
    log = worker.log_path.read_text()
    assert "does not match its SHA-256" in log and "Refusing to run it" in log, log[-2000:]
    assert registered(cluster) == 0
    assert list((cluster.root / "worker-1" / "blender").iterdir()) == [], "something of the build was kept"
    assert not runs.exists(), "the refused build ran"
