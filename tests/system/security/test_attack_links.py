"""Signed links point at the gateway's configured URL, never at a request's Host (issue 9, item 13).

A signed link is a credential: whoever holds it downloads the build or the job's frames. It
was built from the request's Host header, so a request with `Host: evil.example` got a link,
signature and all, that sent its holder (a worker fetching Blender, a browser following the
archive redirect) to the attacker's host.
"""
from __future__ import annotations

import dataclasses
import socket
from urllib.parse import urlsplit

import pytest

from apitools import bearer, farm_of
from framefarm.gateway import blender_builds
from framefarm.gateway.app import create_app
from framefarm.gateway.config import Settings

FORGED = {"Host": "evil.example", "X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "http"}


def gateway(settings: Settings, tmp_path, **changes):
    """A gateway app with `changes`, and the Blender build it publishes (so it hands out a signed link)."""
    http = create_app(dataclasses.replace(settings, **changes)).test_client()
    tarball = tmp_path / "blender-4.2.1-linux-x64.tar.xz"
    tarball.write_bytes(b"a tarball's bytes")
    blender_builds.publish(farm_of(http).redis, farm_of(http).storage, tarball, "4.2.1")
    return http, tarball.read_bytes()


def blender_link(http, token: str) -> str:
    resp = http.get("/v1/blender", headers={**bearer(token), **FORGED})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return resp.get_json()["url"]


def test_a_forged_host_gets_a_link_to_the_configured_public_url(settings, tokens, tmp_path):
    http, content = gateway(settings, tmp_path, public_url="https://farm.example:8443/")
    link = urlsplit(blender_link(http, tokens.worker))
    assert (link.scheme, link.netloc) == ("https", "farm.example:8443")
    assert "evil" not in link.geturl()
    # The link works where it points: its path and signature are the gateway's.
    resp = http.get(f"{link.path}?{link.query}")
    assert resp.status_code == 200 and resp.data == content


@pytest.mark.parametrize("bind, tls, expected", [
    ("127.0.0.1:8500", False, "http://127.0.0.1:8500"),
    ("10.1.2.3:443", True, "https://10.1.2.3:443"),
    ("0.0.0.0:8400", False, f"http://{socket.gethostname()}:8400"),
    ("[::]:8400", False, f"http://{socket.gethostname()}:8400"),
])
def test_without_a_public_url_links_point_at_the_listen_address(settings, tokens, tmp_path, bind, tls, expected):
    """The fallback is this gateway's own address (a wildcard one names the machine), still never the Host."""
    changes = {"certfile": "/c.pem", "keyfile": "/k.pem"} if tls else {}
    http, _ = gateway(settings, tmp_path, public_url="", bind=bind, **changes)
    link = blender_link(http, tokens.worker)
    assert link.startswith(expected + "/v1/blender/"), link
