"""A client whose first gateways are dead still submits, follows and downloads its job.

The client is the project's own failover client (framefarm.common.http.Client),
traced attempt by attempt, so the time it spends on a dead gateway is measured,
not guessed: it must be gone from it within two seconds of the first failed call.
"""
from __future__ import annotations

import contextlib
import threading

from faulttools import (TracingClient, check_archive, kill_machine, parts_done, unresponsive_host,
                        wait_terminal)
from farmtools import wait_for
from framefarm.gateway.localfarm import free_port
from framefarm.common.api import FarmAPI
from framefarm.client.submission import submit_scene

LEAVE_WITHIN_S = 2.0


def test_a_client_configured_with_dead_gateways_first_submits_and_tracks_its_job(cluster, scenes, redis_client,
                                                                                  tmp_path):
    scene = scenes("--animated", "--size", "48")
    doomed = cluster.add_gateway()
    cluster.add_gateway()
    cluster.add_worker()
    cluster.add_worker()
    silent, sockets = unresponsive_host()
    nothing_there = f"http://127.0.0.1:{free_port()}"
    client = TracingClient([silent, nothing_there, *cluster.urls], cluster.tokens.client, retry_for=60)
    api = FarmAPI(client)

    with contextlib.ExitStack() as stack:
        for sock in sockets:
            stack.enter_context(sock)
        job, _ = submit_scene(api, scene, frames="1-24", chunk=2)
    # The silent host cost one connect timeout, once; the refused port cost nothing.
    failed, moved = client.failover(silent)
    print(f"silent host: left {moved.started - failed.started:.2f}s after the first call to it began")
    assert moved.started - failed.started < client.connect_timeout + 0.5
    failed, moved = client.failover(nothing_there)
    print(f"port with nothing listening: left {moved.started - failed.ended:.3f}s after the first failed call")
    assert moved.started - failed.ended < LEAVE_WITHIN_S
    assert [a.url for a in client.attempts].count(silent) == 1  # marked down: not retried on every call

    # Follow the job from another thread; its long-polls go to the doomed gateway.
    followed: list[dict] = []
    follower = threading.Thread(target=lambda: followed.append(wait_terminal(api, job["id"], 150)), daemon=True)
    follower.start()
    wait_for(lambda: parts_done(redis_client, job["id"]) >= 1, 60, "the first part to be done")
    wait_for(lambda: client.waiting_on(doomed.url), 30, "a long-poll in flight on the doomed gateway")
    killed = kill_machine(doomed)
    assert parts_done(redis_client, job["id"]) < 12, "the job ended before the gateway died"

    follower.join(timeout=160)
    assert followed and followed[0]["status"] == "done", followed
    failed, moved = client.failover(doomed.url, after=killed)
    print(f"gateway SIGKILL: the client moved on {moved.started - killed:.3f}s after the kill, "
          f"{moved.started - failed.ended:.3f}s after its first failed call")
    assert moved.started - failed.ended < LEAVE_WITHIN_S
    archive = api.download_archive(job["id"], tmp_path / "out.zip")
    check_archive(archive, list(range(1, 25)), (48, 48))
    assert all(w.alive() for w in cluster.workers)  # workers failed over too, and finished the job
