"""How a worker asks for work, against real gunicorn gateways: it honours Retry-After and
backs off (with jitter) after claims answered "nothing" without waiting, never claiming in
a tight loop; and the project's client keeps its connections to a gateway alive, still
failing over as before when a pooled connection has gone stale.

Rates are counted over a fixed window (the gateway's access log), which is what is under
test; the bounds are an order of magnitude away from a tight loop's hundreds per second.
"""
from __future__ import annotations

import re
import time

from farmtools import wait_for
from framefarm.common import http as farm_http
from framefarm.common.api import FarmAPI
from framefarm.common.http import Client
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
