"""A worker counts the cores it may use, not the host's: one held to a core by `taskset` (as a
cpuset or a container's CPU limit would) takes one slot under `--slots auto` (render.usable_cores)."""
from __future__ import annotations

import os
import subprocess
import sys

from farmtools import require, wait_for
from framefarm.gateway import keys


def test_a_worker_held_to_one_core_takes_one_slot(cluster):
    taskset = require("taskset")
    cluster.add_gateway()
    log = cluster.root / "pinned.log"
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [taskset, "-c", "0", sys.executable, "-m", "framefarm.cli", "worker",
             "--gateway", cluster.urls[0], "--workdir", str(cluster.root / "pinned"), "--device", "CPU",
             "--name", "pinned"],
            env={**os.environ, "FRAMEFARM_TOKEN": cluster.tokens.worker}, stdout=out,
            stderr=subprocess.STDOUT)
    try:
        r = cluster.redis.client()

        def registration() -> dict | None:
            for wid in r.zrange(keys.WORKERS, 0, -1):
                fields = r.hgetall(keys.worker(wid.decode()))
                if fields.get(b"name") == b"pinned":
                    return fields
            return None

        wait_for(lambda: registration() or worker.poll() is not None, 60, "the pinned worker to register")
        fields = registration()
        assert fields is not None, log.read_text()
        assert fields[b"slots"] == b"1", fields
    finally:
        worker.terminate()
        worker.wait(timeout=30)
