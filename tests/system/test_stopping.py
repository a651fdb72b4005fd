"""Stopping is bounded and leaves nothing behind, however the signals come.

Each long-running command gets bursts of SIGTERM and SIGINT (hundreds, in a tight
loop, a few bursts with random gaps), as from a service manager that signals the
process group and the process, or an artist pressing Ctrl-C again and again.
Each must exit within its bound and leave no process of its tree alive (Blender
under a worker, gunicorn's workers under its master, everything under `up`).

With the handler these commands had before 007c982 (`Event.set()` called inside
the signal handler), an idle `framefarm worker` hung in a futex in the first or
second repetition of test_a_burst_of_stop_signals_stops_an_idle_worker.
"""
from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from faulttools import Family, blenders_among, fields, rendering, signal_burst, still_leased
from farmtools import descendants, wait_for
from framefarm.client.submission import submit_scene
from framefarm.common.api import FarmAPI
from framefarm.common.http import Client
from framefarm.gateway import keys
from framefarm.gateway.localfarm import Process, WorkerProcess, free_port

REPEATS = 3
# The bounds the commands promise (docs/operations.md), with room for a loaded CI machine.
WORKER_BOUND_S = 15.0
WORKER_NOW_BOUND_S = 8.0
GATEWAY_BOUND_S = 15.0
UP_BOUND_S = 40.0
# Python gives signals back to their default action while it exits, so a signal of the
# burst that lands then ends the process by that signal: also an orderly end.
CLEAN_EXITS = (0, -signal.SIGTERM, -signal.SIGINT)


def bursts(proc: Process, rng: random.Random) -> float:
    """A few bursts with random gaps, the first right away; returns when it began."""
    began = time.monotonic()
    for n in range(rng.randint(2, 4)):
        signal_burst(proc.pid)
        time.sleep(rng.uniform(0, 0.3))  # part of the scenario (a person's pace), not a wait for anything
    return began


def long_scene(scenes) -> Path:
    return scenes("--animated", "--size", "64", "--samples", "256")


def test_a_burst_of_stop_signals_stops_an_idle_worker(cluster, redis_client):
    rng = random.Random(14)
    cluster.add_gateway()
    for n in range(REPEATS):
        worker = cluster.add_worker()
        cluster.wait_registered(1)
        family = Family(worker.pid)
        began = bursts(worker, rng)
        took = family.wait_exit(worker, WORKER_BOUND_S, f"idle worker (repetition {n})", since=began)
        family.wait_gone(5, "an idle worker")
        print(f"idle worker {n}: exited {took:.2f}s after the first burst")
        assert worker.returncode in CLEAN_EXITS, worker.tail()
        wait_for(lambda: redis_client.zcard(keys.WORKERS) == 0, 10, "the worker to unregister")


def test_a_worker_killed_while_it_probes_blender_leaves_no_blender_behind(cluster, redis_client):
    """At start-up the worker runs Blender once to learn its version and devices. Killed then
    (SIGKILL: nothing of the worker's own can clean up, as with the OOM killer), that Blender
    dies with it. Unsandboxed, where no bwrap --die-with-parent stands between the two."""
    cluster.add_gateway()
    worker = cluster.add_worker(extra=["--sandbox", "off"])
    family = Family(worker.pid)

    def probing() -> list[int]:
        family.look()
        return blenders_among(family.alive())

    probe = wait_for(probing, 60, "the worker to start Blender to probe it", interval=0.02)
    assert redis_client.zcard(keys.WORKERS) == 0, "the worker registered: it was past its probe"
    try:
        # Frozen, so that it cannot finish its probe and exit on its own before it is looked
        # for; SIGKILL (the parent-death signal) ends a stopped process too.
        for pid in probe:
            os.kill(pid, signal.SIGSTOP)
        os.kill(worker.pid, signal.SIGKILL)
        family.wait_exit(worker, 5, "a worker killed with SIGKILL")
        family.wait_gone(5, f"a worker killed while probing Blender (the probe: {probe})")
    finally:
        for pid in blenders_among(family.alive()):  # left behind: the test failed, clean up
            os.kill(pid, signal.SIGKILL)


def test_a_burst_of_stop_signals_stops_a_rendering_worker_and_hands_its_part_back(cluster, scenes, redis_client):
    cluster.env["FRAMEFARM_LEASE_S"] = "60"  # only a hand-back can requeue the part within the test
    rng = random.Random(1414)
    cluster.add_gateway()
    api = FarmAPI(Client(cluster.urls, cluster.tokens.client, retry_for=30))
    submit_scene(api, long_scene(scenes), frames="1-8", chunk=8)
    for n in range(REPEATS - 1):  # each repetition waits for Blender to start: fewer of them
        worker = cluster.add_worker()
        pid, token = wait_for(lambda: rendering(redis_client, worker), 60, "the worker to be rendering")
        family = Family(worker.pid)
        assert len(family.members) > 1  # Blender is in the tree
        began = bursts(worker, rng)
        took = family.wait_exit(worker, WORKER_BOUND_S, f"rendering worker (repetition {n})", since=began)
        family.wait_gone(5, "a rendering worker")
        print(f"rendering worker {n}: exited {took:.2f}s after the first burst")
        assert worker.returncode in CLEAN_EXITS, worker.tail()
        assert not still_leased(redis_client, pid, token), "the part was not handed back"
        part = fields(redis_client, keys.part(pid))
        assert part["attempts"] == "0", part  # handed back, not left to expire


def rendering_worker(cluster, scenes, redis_client):
    """A gateway and a worker rendering a long part under a long lease (only a
    hand-back can requeue it within a test)."""
    cluster.env["FRAMEFARM_LEASE_S"] = "60"
    gw = cluster.add_gateway()
    api = FarmAPI(Client(cluster.urls, cluster.tokens.client, retry_for=30))
    submit_scene(api, long_scene(scenes), frames="1-8", chunk=8)
    worker = cluster.add_worker()
    wait_for(lambda: rendering(redis_client, worker), 60, "the worker to be rendering")
    return gw, worker


@contextlib.contextmanager
def frozen(gw: Process):
    """The gateway stopped with SIGSTOP, master and workers: it accepts connections
    (the kernel queues them) and never answers, like a hung or swapped-out host."""
    os.killpg(gw.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.killpg(gw.pid, signal.SIGCONT)


def test_a_second_signal_stops_a_worker_now_even_with_its_gateway_hung(cluster, scenes, redis_client):
    """The graceful stop cannot hand the part back to a frozen gateway, and a second
    SIGTERM cuts it short: the worker exits at once, Blender too."""
    gw, worker = rendering_worker(cluster, scenes, redis_client)
    family = Family(worker.pid)
    with frozen(gw):
        worker.signal(signal.SIGTERM)
        wait_for(lambda: "stopping:" in worker.log_path.read_text(), 10, "the graceful stop to begin")
        sent = time.monotonic()
        worker.signal(signal.SIGTERM)
        took = family.wait_exit(worker, WORKER_NOW_BOUND_S, "a worker told twice to stop", since=sent)
        print(f"second SIGTERM -> worker gone in {took:.2f}s (gateway frozen)")
        family.wait_gone(5, "a worker stopped now")
    assert "stopping now" in worker.log_path.read_text()


def test_a_worker_stops_within_its_bound_when_its_gateway_hangs(cluster, scenes, redis_client):
    """One SIGTERM, the gateway frozen: the graceful stop gives up on it in time."""
    gw, worker = rendering_worker(cluster, scenes, redis_client)
    family = Family(worker.pid)
    with frozen(gw):
        sent = time.monotonic()
        worker.signal(signal.SIGTERM)
        took = family.wait_exit(worker, WORKER_BOUND_S, "a worker whose gateway hangs", since=sent)
        print(f"SIGTERM -> worker gone in {took:.2f}s (gateway frozen)")
        family.wait_gone(5, "a worker whose gateway hangs")
    assert worker.returncode == 0, worker.tail()


def test_a_worker_stops_at_once_while_a_frozen_gateway_holds_its_registration(cluster):
    """The only gateway accepts connections and never answers (registering would retry
    for minutes): a stop signal still ends the worker at once."""
    with socket.create_server(("127.0.0.1", 0)) as frozen_gateway:
        frozen_gateway.settimeout(60)
        worker = WorkerProcess("registering", [f"http://127.0.0.1:{frozen_gateway.getsockname()[1]}"],
                               cluster.tokens.worker, cluster.root / "registering",
                               cluster.root / "registering.log", device="CPU")
        cluster.workers.append(worker.start())
        connection, _ = frozen_gateway.accept()  # the worker is registering now, and waits
        with connection:
            family = Family(worker.pid)
            sent = time.monotonic()
            worker.signal(signal.SIGTERM)
            took = family.wait_exit(worker, WORKER_NOW_BOUND_S, "a worker stopped while registering", since=sent)
            print(f"stopped while registering: gone in {took:.2f}s")
    assert worker.returncode == 0, worker.tail()
    assert "stopped before the farm answered the registration" in worker.log_path.read_text()


def test_a_burst_of_stop_signals_stops_a_gateway(cluster):
    rng = random.Random(141414)
    for n in range(REPEATS):
        gw = cluster.add_gateway()
        family = Family(gw.pid)
        assert len(family.members) > 1  # gunicorn's master and its workers
        began = bursts(gw, rng)
        took = family.wait_exit(gw, GATEWAY_BOUND_S, f"gateway (repetition {n})", since=began)
        family.wait_gone(5, "a gateway")
        print(f"gateway {n}: exited {took:.2f}s after the first burst")


def _start_up(tmp_path: Path, n: int) -> tuple[Process, int]:
    port = free_port()
    home = tmp_path / f"home-{n}"
    up = Process(f"up-{n}", [sys.executable, "-m", "framefarm.cli", "up", "--port", str(port), "--workers", "1",
                             "--device", "CPU"], tmp_path / f"up-{n}.log", {"FRAMEFARM_HOME": str(home)})
    up.start()
    wait_for(lambda: "Framefarm is up" in up.log_path.read_text() or not up.alive(), 90, "`framefarm up` to start")
    assert up.alive(), up.tail()
    # Its worker counts as started once it has registered (it logs so).
    worker_log = home / "logs" / "worker-0.log"
    wait_for(lambda: worker_log.exists() and "registered as" in worker_log.read_text(), 60,
             "the local worker to register")
    return up, port


@pytest.fixture
def up_farms():
    started: list[Process] = []
    yield started
    for up in started:  # only after a failure: the tests stop them themselves
        if up.alive():
            os.killpg(up.pid, signal.SIGKILL)


def test_a_burst_of_stop_signals_stops_framefarm_up_and_everything_it_started(tmp_path, up_farms):
    rng = random.Random(14141414)
    for n in range(2):
        up, _ = _start_up(tmp_path, n)
        up_farms.append(up)
        family = Family(up.pid)
        assert len(family.members) >= 5  # redis, gunicorn master and workers, the worker
        began = bursts(up, rng)
        took = family.wait_exit(up, UP_BOUND_S, f"framefarm up (repetition {n})", since=began)
        family.wait_gone(5, "framefarm up")
        print(f"up {n}: everything gone {took:.2f}s after the first burst")


def test_framefarm_up_killed_with_sigkill_leaves_nothing_behind(tmp_path, up_farms):
    up, _ = _start_up(tmp_path, 0)
    up_farms.append(up)
    family = Family(up.pid)
    assert len(family.members) >= 5
    os.kill(up.pid, signal.SIGKILL)
    up.proc.wait()
    # Its children get SIGTERM from the kernel (PDEATHSIG) and stop within their own bounds.
    family.wait_gone(UP_BOUND_S, "framefarm up killed with SIGKILL")
    assert not descendants(up.pid)


def test_a_stop_signal_while_framefarm_up_starts_stops_it_at_once(tmp_path, up_farms):
    """The signal lands while `up` waits for its gateway to be ready: it stops waiting
    and stops what it had started, instead of finishing the start first."""
    home = tmp_path / "home"
    up = Process("up", [sys.executable, "-m", "framefarm.cli", "up", "--port", str(free_port()), "--workers", "1",
                        "--device", "CPU"], tmp_path / "up.log", {"FRAMEFARM_HOME": str(home)})
    up.start()
    up_farms.append(up)
    # The gateway has been started (its log exists) and is not ready yet.
    wait_for(lambda: (home / "logs" / "gateway.log").exists(), 60, "`up` to start its gateway")
    family = Family(up.pid)
    began = bursts(up, random.Random(7))
    took = family.wait_exit(up, UP_BOUND_S, "framefarm up stopped while starting", since=began)
    family.wait_gone(5, "framefarm up stopped while starting")
    print(f"up stopped while starting: gone {took:.2f}s after the first burst")
    assert "stopped while starting" in up.log_path.read_text()
    assert "Framefarm is up" not in up.log_path.read_text()
