"""Transport: the gateway serves HTTPS itself, clients trust a private CA, tokens never travel in URLs.

Everything here runs for real: a CA and a certificate made in the test, `framefarm gateway
--certfile --keyfile` under gunicorn, the `framefarm` command line, and for the end-to-end run
a `framefarm worker` with Debian's Blender, all talking HTTPS.
"""
from __future__ import annotations

import http.client
import json
import re
import time

import pytest
import yaml

from farmtools import check_frames, framefarm_cli, wait_for
from framefarm.gateway.contract import Contract
from tlstools import TLSGateway, make_ca

# Names a credential would have: none may be a query, path or cookie parameter.
CREDENTIAL = re.compile(r"token|auth|secret|password|key", re.IGNORECASE)


@pytest.fixture
def tls(tmp_path):
    return make_ca(tmp_path / "tls")


@pytest.fixture
def tls_gateway(redis_server, redis_client, tls, tmp_path):
    gw = TLSGateway(tls, redis_server.url, f"file://{tmp_path / 'storage'}", tmp_path / "tls-gateway.log").start()
    yield gw
    gw.stop(timeout=20)


def client_env(gateway: str, token: str, tmp_path, **extra: str) -> dict[str, str]:
    return {"FRAMEFARM_GATEWAYS": gateway, "FRAMEFARM_TOKEN": token, "FRAMEFARM_HOME": str(tmp_path / "home"),
            "FRAMEFARM_CA_BUNDLE": "", **extra}


def test_the_client_talks_https_to_a_gateway_whose_certificate_the_farms_ca_signed(tls_gateway, tls, tokens,
                                                                                    tmp_path):
    env = client_env(tls_gateway.url, tokens.client, tmp_path)
    by_env = framefarm_cli("jobs", "--json", env={**env, "FRAMEFARM_CA_BUNDLE": str(tls.ca)}, timeout=60)
    assert by_env.returncode == 0, by_env.stderr + tls_gateway.tail()
    assert json.loads(by_env.stdout) == []
    by_flag = framefarm_cli("jobs", "--ca-bundle", str(tls.ca), env=env, timeout=60)
    assert by_flag.returncode == 0, by_flag.stderr


def test_without_the_ca_the_client_stops_at_once_with_a_certificate_error(tls_gateway, tokens, tmp_path):
    """An untrusted certificate is a setup problem: no retrying for a minute, no traceback, and a hint."""
    started = time.monotonic()
    res = framefarm_cli("jobs", env=client_env(tls_gateway.url, tokens.client, tmp_path, FRAMEFARM_RETRY_FOR="60"),
                        timeout=60)
    assert res.returncode != 0
    assert time.monotonic() - started < 30, "a certificate error is not worth retrying"
    assert "Traceback" not in res.stderr, res.stderr
    assert "certificate" in res.stderr and "--ca-bundle" in res.stderr and "FRAMEFARM_CA_BUNDLE" in res.stderr, \
        res.stderr


def test_a_ca_bundle_that_cannot_be_read_is_a_clear_error(tokens, tmp_path):
    res = framefarm_cli("jobs", "--ca-bundle", str(tmp_path / "missing.pem"),
                        env=client_env("https://127.0.0.1:9", tokens.client, tmp_path), timeout=60)
    assert res.returncode != 0 and "Traceback" not in res.stderr
    assert "cannot read the CA bundle" in res.stderr and "missing.pem" in res.stderr, res.stderr


def test_plain_http_to_the_https_port_gets_no_answer(tls_gateway, tokens, tmp_path):
    plain = tls_gateway.url.replace("https://", "http://")
    conn = http.client.HTTPConnection("127.0.0.1", tls_gateway.port, timeout=10)
    with pytest.raises((OSError, http.client.HTTPException)):
        conn.request("GET", "/v1/jobs", headers={"Authorization": f"Bearer {tokens.client}"})
        conn.getresponse()
    conn.close()
    res = framefarm_cli("jobs", env=client_env(plain, tokens.client, tmp_path, FRAMEFARM_RETRY_FOR="1"), timeout=60)
    assert res.returncode != 0 and "Traceback" not in res.stderr
    assert "no gateway answered" in res.stderr, res.stderr


def test_no_operation_takes_a_credential_in_its_url():
    """Every operation of openapi.yaml: tokens go in the Authorization header (or a lease's
    X-Lease-Token), never in a path, query or cookie parameter that logs and proxies keep."""
    contract = Contract.packaged()
    spec = contract.spec
    assert {s["type"] for s in spec["components"]["securitySchemes"].values()} == {"http"}
    checked = 0
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if method not in ("get", "put", "post", "delete", "patch"):
                continue
            for p in (contract.inline(p) for p in op.get("parameters", []) + item.get("parameters", [])):
                checked += 1
                if p["in"] != "header":
                    assert not CREDENTIAL.search(p["name"]), f"{method.upper()} {path}: {p['in']} parameter {p['name']}"
    assert checked > 20


def test_a_whole_job_over_https_puts_no_token_in_any_url(cluster, scenes, tls, tmp_path):
    """Client, worker and download all over HTTPS with the farm's CA; the gateway logs every
    request line in full (query strings too), and none of them holds a token."""
    log = tmp_path / "tls-gateway.log"
    gw = TLSGateway(tls, cluster.redis.url, f"file://{cluster.root / 'storage'}", log, env=cluster.env,
                    gunicorn_args=["--access-logformat", '%(h)s "%(r)s" %(s)s'])
    cluster.gateways.append(gw.start())
    cluster.add_worker(env={"FRAMEFARM_CA_BUNDLE": str(tls.ca)})
    cluster.wait_registered(1)
    out = tmp_path / "frames"
    res = framefarm_cli("submit", str(scenes("--size", "32")), "--frames", "1-2", "--wait", "--output", str(out),
                        env=client_env(gw.url, cluster.tokens.client, tmp_path, FRAMEFARM_CA_BUNDLE=str(tls.ca)))
    assert res.returncode == 0, res.stderr + cluster.logs()
    check_frames(out, [1, 2], (32, 32))

    # The download is the client's last request, and gunicorn logs it after the answer has gone out.
    wait_for(lambda: "/v1/download/" in log.read_text(), 10, "the download's access line")
    lines = [line for line in log.read_text().splitlines() if re.search(r'"(GET|POST|PUT|DELETE) /', line)]
    assert any("/v1/workers/" in line and "/claim" in line for line in lines), "the worker's calls are logged"
    assert any("/v1/download/" in line and "sig=" in line for line in lines), "query strings are logged"
    secrets = [cluster.tokens.client, cluster.tokens.worker, cluster.tokens.admin]
    for line in lines:
        assert not any(s in line for s in secrets) and not CREDENTIAL.search(line.split('"')[1]), line
