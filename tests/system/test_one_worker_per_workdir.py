"""Two `framefarm worker` processes on one folder (the default $FRAMEFARM_HOME/worker, run
twice on a machine): the second refuses to start, and a worker killed outright never keeps
its own restart out (worker/workdir.py)."""
from __future__ import annotations

from farmtools import framefarm_cli, wait_for
from framefarm.gateway import keys
from framefarm.gateway.localfarm import WorkerProcess


def test_a_second_worker_on_a_folder_in_use_refuses_and_a_killed_ones_folder_is_free(cluster):
    cluster.add_gateway()
    first = cluster.add_worker()
    cluster.wait_registered(1)
    folder = cluster.root / "worker-0"
    res = framefarm_cli("worker", "--workdir", str(folder), "--gateway", cluster.urls[0], "--name", "intruder",
                        env={"FRAMEFARM_TOKEN": cluster.tokens.worker}, timeout=60)
    assert res.returncode == 1, res.stderr
    assert f"framefarm worker: {folder} is in use by another worker (pid {first.pid})" in res.stderr
    assert "Traceback" not in res.stderr
    assert first.alive()

    first.kill_group()  # as the OOM killer or a power cut would: no clean exit, nothing let go
    first.proc.wait(timeout=30)
    again = WorkerProcess("restarted", cluster.urls, cluster.tokens.worker, folder, cluster.root / "restarted.log",
                          device="CPU").start()
    cluster.workers.append(again)  # stopped with the cluster
    r = cluster.redis.client()

    def registered() -> bool:
        return any(r.hget(keys.worker(w.decode()), "name") == b"restarted" for w in r.zrange(keys.WORKERS, 0, -1))

    wait_for(lambda: registered() or not again.alive(), 60, "the restarted worker to register")
    assert again.alive(), again.tail()
