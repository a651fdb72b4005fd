"""Killing things while the farm renders: every frame still arrives, exactly once.

Real processes throughout: redis-server with AOF, gunicorn gateways, `framefarm
worker` agents running Debian's Blender. Leases here are 4 s with 1 s heartbeats
(the cluster fixtures' settings), so a lease that runs out does so quickly.
"""
from __future__ import annotations

import hashlib
import http.client
import json
import os
import signal
import threading
import time
from urllib.parse import urlsplit

from faulttools import (TracingClient, blender_gone, blender_rendering, check_archive, fields, kill_machine,
                        part_states, parts_done, rendering, wait_requeued, wait_terminal)
from farmtools import wait_for
from framefarm.common.api import FarmAPI
from framefarm.common.http import Client
from framefarm.client.submission import submit_scene
from framefarm.gateway import keys
from framefarm.gateway.gateways import redis_now_ms

LEASE_S = 4.0
SIZE = 48


def farm_api(cluster) -> FarmAPI:
    return FarmAPI(Client(cluster.urls, cluster.tokens.client, retry_for=60))


def progress(r, job_id: str, timeout: float = 60) -> int:
    """Wait for the next part of the job to be done (proof the farm is moving)."""
    before = parts_done(r, job_id)
    return wait_for(lambda: parts_done(r, job_id) > before and parts_done(r, job_id), timeout,
                    f"progress past {before} parts")


def wait_rendering(cluster, r, index: int) -> tuple[str, str]:
    w = cluster.workers[index]
    return wait_for(lambda: rendering(r, w), 60, f"{w.name} to be rendering a part")


def test_a_job_survives_a_killed_worker_a_killed_gateway_and_a_redis_restart(own_cluster, scenes, tmp_path):
    c = own_cluster
    scene = scenes("--animated", "--size", str(SIZE))
    c.add_gateway()
    survivor_gw = c.add_gateway()
    for _ in range(3):
        c.add_worker()
    r = c.redis.client()
    api = farm_api(c)
    job, _ = submit_scene(api, scene, frames="1-120", chunk=4)
    job_id = job["id"]

    # 1. A worker dies in the middle of a part; its lease will run out.
    victim_part, _ = wait_rendering(c, r, 0)
    os.kill(c.workers[0].pid, signal.SIGKILL)
    c.workers[0].proc.wait()

    # 2. The gateway every client and worker prefers (the first listed) dies with all its processes.
    at_gateway_kill = progress(r, job_id)
    kill_machine(c.gateways[0])

    # 3. Redis is killed and started again on the same data folder: AOF brings everything back.
    at_redis_kill = progress(r, job_id)
    print(f"chaos: gateway killed after {at_gateway_kill}/30 parts, Redis after {at_redis_kill}/30")
    token_keys = set(r.scan_iter(keys.token("*")))
    leases = {p["index"]: p["token"] for p in part_states(r, job_id) if p["state"] == "leased"}
    assert fields(r, keys.job(job_id))["status"] == "running"
    c.redis.signal(signal.SIGKILL)
    c.redis.proc.wait()
    c.redis.start()
    r = c.redis.client()
    restarted_ms = redis_now_ms(r)

    final = wait_terminal(api, job_id, 150)
    assert final["status"] == "done", final
    assert final["frames"]["done"] == 120
    archive = api.download_archive(job_id, tmp_path / "out.zip")
    check_archive(archive, list(range(1, 121)), (SIZE, SIZE))

    # Nothing was lost: the job, every part (done, once), every token.
    assert job_id.encode() in r.zrange(keys.ALL_JOBS, 0, -1)
    parts = part_states(r, job_id)
    assert [p["state"] for p in parts] == ["done"] * 30
    victim = fields(r, keys.part(victim_part))
    assert victim["error"].startswith("lease expired") and int(victim["attempts"]) >= 1
    # A lease held across the restart still fenced its part: its worker's result counted afterwards.
    assert any(leases.get(p["index"]) == p["token"] and int(p["done_at"]) > restarted_ms for p in parts), leases
    assert set(r.scan_iter(keys.token("*"))) == token_keys
    assert job_id in [j["id"] for j in api.jobs()]  # the client token still authenticates
    # Nobody was restarted by hand: the surviving gateway and workers are the original processes.
    assert survivor_gw.alive() and c.workers[1].alive() and c.workers[2].alive()


def test_a_paused_workers_late_result_is_refused_and_leaves_the_archive_alone(cluster, scenes, redis_client,
                                                                              tmp_path):
    scene = scenes("--animated", "--size", str(SIZE))
    cluster.add_gateway()
    zombie = cluster.add_worker()
    api = farm_api(cluster)
    job, _ = submit_scene(api, scene, frames="1-4", chunk=4)
    pid, token = wait_rendering(cluster, redis_client, 0)
    # Frozen before it handed the part to its warm Blender, the agent would leave Blender
    # idle (it exits after a while) and have no frames to send: wait for Blender to render.
    wait_for(lambda: blender_rendering(zombie), 60, "the zombie's Blender rendering the part")
    zombie.signal(signal.SIGSTOP)
    try:
        # Its Blender goes on and finishes while the agent is frozen past its lease.
        wait_requeued(redis_client, pid, token, LEASE_S + 5)
        cluster.add_worker()
        final = wait_terminal(api, job["id"], 90)
        assert final["status"] == "done"
        wait_for(lambda: blender_gone(zombie), 30, "the zombie's Blender to finish")
        archive = api.download_archive(job["id"], tmp_path / "out.zip")
        digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    finally:
        zombie.signal(signal.SIGCONT)
    # Thawed, the zombie uploads its frames under the stale token: refused with 409.
    wait_for(lambda: "the farm refused our result" in zombie.log_path.read_text(), 30,
             "the zombie's result to be refused")
    assert "the lease on part" in zombie.log_path.read_text()
    assert zombie.alive()
    again = api.download_archive(job["id"], tmp_path / "again.zip")
    assert hashlib.sha256(again.read_bytes()).hexdigest() == digest
    check_archive(again, [1, 2, 3, 4], (SIZE, SIZE))
    assert fields(redis_client, keys.part(pid))["token"] != token
    # The late upload was not kept anywhere (its key carries the stale token).
    assert not list((cluster.root / "storage").rglob(f"*-{token}.zip"))


def test_sigterm_on_a_worker_hands_its_part_back_at_once(cluster, scenes, redis_client):
    cluster.env["FRAMEFARM_LEASE_S"] = "30"  # long, so only a release can requeue the part soon
    scene = scenes("--animated", "--size", "64", "--samples", "64")
    cluster.add_gateway()
    worker = cluster.add_worker()
    job, _ = submit_scene(farm_api(cluster), scene, frames="1-8", chunk=8)
    pid, token = wait_rendering(cluster, redis_client, 0)
    lease_deadline = int(redis_client.hget(keys.part(pid), "deadline"))
    sent = time.monotonic()
    worker.signal(signal.SIGTERM)
    requeued = wait_requeued(redis_client, pid, token, 10)
    requeued_ms = redis_now_ms(redis_client)
    print(f"worker SIGTERM -> part requeued: {requeued - sent:.2f}s (lease 30s)")
    part = fields(redis_client, keys.part(pid))
    assert part["state"] == "queued"
    assert part["error"].startswith("released by worker")  # not "lease expired"
    assert part["attempts"] == "0"  # handing a part back is not a failed attempt
    assert requeued_ms < lease_deadline - 15_000  # well before the lease would have run out
    assert worker.proc.wait(timeout=20) == 0
    wait_for(lambda: blender_gone(worker), 10, "the worker's Blender to exit")


def _call(url: str, method: str, path: str, token: str | None) -> tuple[int, dict[str, str], dict]:
    """One raw HTTP call, no retries: what a gateway answers right now."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.request(method, path, headers={"Authorization": f"Bearer {token}"} if token else {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, json.loads(resp.read() or b"null")
    finally:
        conn.close()


def test_gateways_answer_503_while_redis_is_down_and_the_farm_resumes(own_cluster, scenes, tmp_path):
    c = own_cluster
    scene = scenes("--animated", "--size", str(SIZE))
    gw = c.add_gateway()
    worker = c.add_worker()
    r = c.redis.client()
    api = farm_api(c)
    job, _ = submit_scene(api, scene, frames="1-12", chunk=2)
    wid = wait_for(lambda: r.zrange(keys.WORKERS, 0, 0), 30, "the worker to register")[0].decode()
    progress(r, job["id"])
    assert fields(r, keys.job(job["id"]))["status"] == "running"
    c.redis.stop()
    waiting = TracingClient(c.urls, c.tokens.client, retry_for=60)
    answered: list = []
    try:
        for method, path, token in [("GET", "/v1/jobs", c.tokens.client),
                                    ("GET", f"/v1/jobs/{job['id']}", c.tokens.client),
                                    ("POST", f"/v1/workers/{wid}/claim", c.tokens.worker),
                                    ("GET", "/v1/gateways", None)]:
            status, headers, body = _call(gw.url, method, path, token)
            assert (status, body["error"]["code"]) == (503, "unavailable"), (path, status, body)
            assert float(headers["retry-after"]) > 0, path
        assert _call(gw.url, "GET", "/readyz", None)[0] == 503
        assert _call(gw.url, "GET", "/healthz", None)[0] == 200
        # A client asking now waits and retries until Redis is back.
        caller = threading.Thread(target=lambda: answered.append(FarmAPI(waiting).jobs()), daemon=True)
        caller.start()
        wait_for(lambda: waiting.attempts, 10, "the client's first attempt")
    finally:
        c.redis.start()
    caller.join(timeout=60)
    assert answered and job["id"] in [j["id"] for j in answered[0]]
    assert not waiting.attempts[0].ok  # its first try met the outage
    final = wait_terminal(api, job["id"], 90)
    assert final["status"] == "done", final
    check_archive(api.download_archive(job["id"], tmp_path / "out.zip"), list(range(1, 13)), (SIZE, SIZE))
    assert gw.alive() and worker.alive()  # resumed without restarting anything
    gateway_log = gw.log_path.read_text()
    assert "unhandled error" not in gateway_log and '" 500 ' not in gateway_log
