"""How a worker asks for work, against real gunicorn gateways: it honours Retry-After and
backs off (with jitter) after claims answered "nothing" without waiting, never claiming in
a tight loop; and the project's client keeps its connections to a gateway alive, still
failing over as before when a pooled connection has gone stale. While a claim waits (minutes),
the gateway keeps its worker present as long as the claim's connection is open, lets it go
once it closes, and hands back at once a part found for a worker that went away.

Rates are counted over a fixed window (the gateway's access log), which is what is under
test; the bounds are an order of magnitude away from a tight loop's hundreds per second.
"""
from __future__ import annotations

import http.client
import json
import re
import time
from urllib.parse import urlsplit

from farmtools import wait_for
from framefarm.common import http as farm_http
from framefarm.common.api import FarmAPI
from framefarm.common.frameset import FrameRange, split
from framefarm.common.http import Client
from framefarm.gateway import keys, staging, workers
from framefarm.gateway.api_worker import CLIENT_GONE
from framefarm.gateway.config import Settings
from framefarm.gateway.farm import Farm
from framefarm.gateway.localfarm import GatewayProcess

WINDOW_S = 8.0


def claims_in(gateway: GatewayProcess, status: str) -> int:
    text = gateway.log_path.read_text(errors="replace")
    return len(re.findall(rf'"POST /v1/workers/[^/]+/claim" {status} ', text))


def count_claims(gateway: GatewayProcess, status: str) -> int:
    """Claims answered `status` during WINDOW_S, once the worker's first one was."""
    wait_for(lambda: claims_in(gateway, status) > 0, 60, f"the worker's first claim answered {status}")
    before = claims_in(gateway, status)
    time.sleep(WINDOW_S)  # the window the rate is counted over, not a wait for anything
    return claims_in(gateway, status) - before


def one_worker_on(cluster, setting: str, value: str) -> GatewayProcess:
    """A gateway with `setting`, and one worker claiming from it."""
    cluster.env[setting] = value
    gateway = cluster.add_gateway(processes=1)
    cluster.add_worker()
    cluster.wait_registered(1)
    return gateway


def test_a_worker_told_to_retry_after_does_not_claim_sooner(cluster):
    """Every claim answered 429 too_many_waiting with Retry-After 2 (this gateway holds no
    waiting request for anyone): the worker asks about once per 2-2.5 s, not at once."""
    refused = count_claims(one_worker_on(cluster, "FRAMEFARM_MAX_WAITERS_PER_TOKEN", "0"), "429")
    print(f"{refused} claims refused in {WINDOW_S:.0f} s")
    assert 1 <= refused <= WINDOW_S / 2 + 1
    assert all(w.alive() for w in cluster.workers)


def test_claims_answered_at_once_with_nothing_back_off(cluster):
    """A farm whose claims never wait (claim_wait_s 0): each empty answer comes at once, and
    the worker backs off (jittered, doubling) instead of asking again straight away."""
    empty = count_claims(one_worker_on(cluster, "FRAMEFARM_CLAIM_WAIT_S", "0"), "204")
    print(f"{empty} empty claims in {WINDOW_S:.0f} s")
    assert 1 <= empty <= 10


def test_the_client_keeps_one_connection_alive_and_survives_its_gateway_restarting(cluster, monkeypatch):
    gateway = cluster.add_gateway(processes=1)
    opened: list[str] = []
    real = farm_http.connection

    def counting(url, timeout, tls=None):
        opened.append(url)
        return real(url, timeout, tls)

    monkeypatch.setattr(farm_http, "connection", counting)
    client = Client([gateway.url], cluster.tokens.client, discover=False, retry_for=30)
    api = FarmAPI(client)
    for _ in range(20):
        assert api.jobs() == []
    assert len(opened) == 1, f"{len(opened)} connections for 20 requests"

    # The gateway restarts on the same port: the pooled connection is dead. The next request
    # still succeeds, on a new connection, and the gateway is not marked down for it.
    gateway.stop()
    again = GatewayProcess(gateway.port, cluster.redis.url, f"file://{cluster.root / 'storage'}",
                           cluster.root / "gateway-again.log", processes=1, threads=16, env=cluster.env)
    cluster.gateways.append(again.start())
    assert api.jobs() == []
    assert len(opened) == 2 and not client._down


def waiting_claim(url: str, token: str, wid: str) -> http.client.HTTPConnection:
    """A claim sent on a connection of its own, waiting; its answer is read with getresponse()."""
    where = urlsplit(url)
    conn = http.client.HTTPConnection(where.hostname, where.port, timeout=60)
    conn.request("POST", f"/v1/workers/{wid}/claim", body=json.dumps({"wait": 60}),
                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    return conn


def farm_of(cluster) -> Farm:
    """The cluster's farm, as this test process reaches it (its Redis, storage and settings)."""
    return Farm.from_settings(Settings.from_env({**cluster.env, "FRAMEFARM_REDIS_URL": cluster.redis.url,
                                                 "FRAMEFARM_STORAGE": f"file://{cluster.root / 'storage'}"}))


def test_a_claim_whose_worker_went_away_hands_its_part_back_at_once(cluster):
    """A worker's process ends while its claim waits (its connection closes): when a part comes,
    the waiting claim must not take it for nobody until the lease runs out (4 s here, minutes
    on a farm); the gateway sees the closed connection and hands the part straight back,
    counting no attempt. A worker still waiting on an open connection then gets that part."""
    cluster.env["FRAMEFARM_CLAIM_WAIT_S"] = "60"
    gateway = cluster.add_gateway(processes=1)
    api = FarmAPI(Client([gateway.url], cluster.tokens.worker, discover=False))
    ghost = api.register({"name": "ghost", "blender_version": "3.4"})["id"]
    live = api.register({"name": "live", "blender_version": "3.4"})["id"]
    waiting_claim(gateway.url, cluster.tokens.worker, ghost).close()  # as a killed process's socket is

    farm = farm_of(cluster)
    record = staging.JobRecord("0a1b2c3d4e5f", "owner", "", 304, 0, "{}",
                               {"name": "j", "start": 1, "step": 1, "chunk": 1, "blender_version": 304,
                                "scene_hash": "0" * 64, "main": "scene.blend"})
    staging.write(farm, record, 1, split(FrameRange(1, 1), 1))  # wakes the waiting claim
    part_key = keys.part(keys.part_id(record.job_id, 0))
    handed_back = f"released by worker {ghost}: {CLIENT_GONE}"
    wait_for(lambda: farm.redis.hget(part_key, "error") == handed_back, 30,
             "the part handed back by the claim whose worker went away")
    part = farm.redis.hgetall(part_key)
    assert part["state"] == "queued" and int(part.get("attempts", 0)) == 0, part
    # The gateway logs it after the part is back in Redis: wait for the line, do not race it.
    wait_for(lambda: f"claim of worker {ghost}: its connection closed" in gateway.log_path.read_text(errors="replace"),
             10, "the gateway's log line for the part handed back")

    conn = waiting_claim(gateway.url, cluster.tokens.worker, live)
    answer = conn.getresponse()
    got = json.loads(answer.read())["part"]
    conn.close()
    assert answer.status == 200 and got["job"] == record.job_id and got["worker"] == live and got["attempts"] == 0


def test_a_waiting_claim_keeps_its_worker_present_and_a_closed_one_lets_it_go(cluster):
    """An idle worker sends nothing but its claim, which waits for minutes (claim_wait_s): while
    its connection stays open the gateway renews its presence (it stays live past the worker
    timeout, 4 s here), and once the connection closes the worker drops out of the live
    workers within a worker timeout, not at the end of the claim's wait."""
    timeout_s = 4.0
    cluster.env.update(FRAMEFARM_CLAIM_WAIT_S="60", FRAMEFARM_WORKER_TIMEOUT_S=str(timeout_s))
    gateway = cluster.add_gateway(processes=1)
    api = FarmAPI(Client([gateway.url], cluster.tokens.worker, discover=False))
    farm = farm_of(cluster)
    waiting = api.register({"name": "waiting", "blender_version": "3.4"})["id"]
    gone = api.register({"name": "gone", "blender_version": "3.4"})["id"]
    started = time.monotonic()
    conn = waiting_claim(gateway.url, cluster.tokens.worker, waiting)
    waiting_claim(gateway.url, cluster.tokens.worker, gone).close()

    def live() -> set[str]:
        return {w["id"] for w in workers.live(farm)}

    wait_for(lambda: gone not in live(), 3 * timeout_s, "the worker whose claim's connection closed let go")
    while time.monotonic() - started < 3 * timeout_s:  # three worker timeouts into the wait
        assert waiting in live(), f"the worker with a waiting claim was let go after {time.monotonic() - started:.1f} s"
        time.sleep(0.2)  # how often presence is checked, not a wait for anything
    conn.close()
