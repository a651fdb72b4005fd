"""Gateway discovery (issue 9, item 14): what `GET /v1/gateways` may make a client do.

Clients adopt the gateways the farm announces and send their token to them. A client that
reached the farm over https must never be talked into plain http (its token would cross the
network in the clear), and discovery can be turned off, leaving only the configured gateways.
The real client (framefarm.common.http) against real gunicorn gateways on one Redis.
"""
from __future__ import annotations

import argparse
import logging

import pytest

from farmtools import wait_for
from framefarm.cli.usage import client_options
from framefarm.client import config
from framefarm.common.http import Client, FarmError, FarmUnavailable
from framefarm.gateway import keys
from framefarm.gateway.localfarm import GatewayProcess, free_port
from tlstools import TLSGateway, make_ca


@pytest.fixture
def farm(redis_server, redis_client, tmp_path):
    """Start gateways on the test's Redis: `farm("http")` or `farm("https")`; all stopped after the test."""
    started: list = []
    storage = f"file://{tmp_path / 'storage'}"
    tls = make_ca(tmp_path / "tls")

    def start(kind: str):
        log = tmp_path / f"gateway-{len(started)}.log"
        if kind == "https":
            gw = TLSGateway(tls, redis_server.url, storage, log)
        else:
            gw = GatewayProcess(free_port(), redis_server.url, storage, log, processes=1, threads=8)
        started.append(gw.start())
        wait_for(lambda: redis_client.zscore(keys.GATEWAYS, gw.url) is not None, 20, f"{gw.url} announced")
        return gw

    start.tls = tls  # type: ignore[attr-defined]
    yield start
    for gw in started:
        gw.stop(timeout=20)


def requests_in(gw) -> list[str]:
    return [line for line in gw.log_path.read_text().splitlines() if '"GET /v1/jobs' in line]


def test_a_client_on_https_never_adopts_an_http_gateway(farm, tokens, caplog):
    secure, plain = farm("https"), farm("http")
    client = Client([secure.url], tokens.client, ca_bundle=str(farm.tls.ca), retry_for=1)
    with caplog.at_level(logging.WARNING, logger="framefarm.client"):
        client.refresh(force=True)
        client.refresh(force=True)
    assert client.gateways == [secure.url]
    refusals = [r.getMessage() for r in caplog.records if plain.url in r.getMessage()]
    assert len(refusals) == 1 and "plain http" in refusals[0], refusals
    # With the https gateway gone, the client has nowhere to go: it never tries the http one.
    assert client.request("GET", "/v1/jobs").status == 200
    secure.stop()
    with pytest.raises(FarmUnavailable):
        client.request("GET", "/v1/jobs")
    assert requests_in(plain) == [], "the token went to a plain-http gateway"


def test_a_client_on_http_may_move_up_to_https(farm, tokens):
    plain, secure = farm("http"), farm("https")
    client = Client([plain.url], tokens.client, ca_bundle=str(farm.tls.ca))
    client.refresh(force=True)
    assert set(client.gateways) == {plain.url, secure.url}


@pytest.mark.parametrize("discover", [True, False])
def test_discovery_off_keeps_the_client_on_its_configured_gateways(farm, tokens, discover):
    first, second = farm("http"), farm("http")
    client = Client([first.url], tokens.client, discover=discover, retry_for=1)
    assert client.request("GET", "/v1/jobs").status == 200
    first.stop()
    if discover:  # the control: the announced gateway takes over
        assert client.request("GET", "/v1/jobs").status == 200
        # gunicorn writes its access line after the response has gone out: wait for it.
        wait_for(lambda: len(requests_in(second)) == 1, 10, "the second gateway's access line")
    else:
        with pytest.raises(FarmUnavailable):
            client.request("GET", "/v1/jobs")
        assert client.gateways == [first.url] and requests_in(second) == []


def parse(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    client_options(p)
    return p.parse_args(argv)


def test_discovery_is_turned_off_by_flag_environment_or_config(monkeypatch, tmp_path):
    monkeypatch.setenv("FRAMEFARM_HOME", str(tmp_path))
    monkeypatch.delenv("FRAMEFARM_DISCOVERY", raising=False)
    assert config.from_args(parse()).discover is True
    assert config.from_args(parse("--no-discovery")).discover is False
    for off in ("off", "0", "false", "no"):
        monkeypatch.setenv("FRAMEFARM_DISCOVERY", off)
        assert config.from_args(parse()).discover is False
    monkeypatch.setenv("FRAMEFARM_DISCOVERY", "sometimes")
    with pytest.raises(FarmError, match="FRAMEFARM_DISCOVERY"):
        config.from_args(parse())
