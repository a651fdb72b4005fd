"""Webhooks aimed at the farm's own network, and forged ones (issue 12, item 5).

A client chooses its job's webhook URL, so a hostile one would aim the farm's gateways at
what only they can reach: the cloud metadata service, Redis, an admin page on loopback.
Such addresses are refused when set (400 bad_webhook, nothing stored) and again, resolved,
when a webhook is sent; a receiver's redirect is never followed (test_webhooks.py).
Each owner's webhooks are signed with a key of its own, so one client cannot forge another's.
"""
from __future__ import annotations

import pytest

from apitools import bearer, expect_error, job_body, scene_bytes, scene_sha, unchanged
from framefarm.gateway import webhooks
from webhooktools import Receiver

__all__ = ["scene_bytes", "scene_sha"]  # fixtures, imported for pytest

FARM_NETWORK = [
    "http://127.0.0.1:6379/", "http://localhost:8400/v1/workers", "http://[::1]/", "http://0.0.0.0/",
    "http://169.254.169.254/latest/meta-data/", "http://10.0.0.5/", "http://192.168.1.1/", "http://[fd00::1]/",
    "http://[::ffff:127.0.0.1]/", "http://metadata.localhost/",
]
NOT_A_WEBHOOK = ["ftp://example.com/", "file:///etc/passwd", "http://user:secret@example.com/",
                 "http://example.com:99999/", "http://" + "a" * 2100 + ".com/", "gopher://example.com/"]


@pytest.mark.parametrize("url", FARM_NETWORK + NOT_A_WEBHOOK)
def test_a_job_webhook_into_the_farm_network_is_refused(http, tokens, scene_sha, url):
    with unchanged(http):
        resp = http.post("/v1/jobs", json=job_body(scene_sha, notify=url), headers=bearer(tokens.client))
        err = expect_error(resp, 400, "bad_webhook")
    assert "webhook" in err["message"]


@pytest.mark.parametrize("url", FARM_NETWORK[:3])
def test_an_admin_subscription_into_the_farm_network_is_refused(http, tokens, url):
    with unchanged(http):
        expect_error(http.post("/v1/webhooks", json={"url": url}, headers=bearer(tokens.admin)), 400, "bad_webhook")


def test_a_client_cannot_see_or_set_farm_subscriptions(http, tokens):
    with unchanged(http):
        expect_error(http.get("/v1/webhooks", headers=bearer(tokens.client)), 403)
        expect_error(http.post("/v1/webhooks", json={"url": "https://example.com/"},
                               headers=bearer(tokens.client)), 403)
        expect_error(http.delete("/v1/webhooks/abc", headers=bearer(tokens.client)), 403)
        expect_error(http.get("/v1/webhooks/key", headers=bearer(tokens.worker)), 403)


def test_each_owner_signs_with_its_own_key(http, tokens):
    keys = {t: http.get("/v1/webhooks/key", headers=bearer(t)).get_json()["key"]
            for t in (tokens.client, tokens.client2, tokens.admin)}
    assert len(set(keys.values())) == 3
    again = http.get("/v1/webhooks/key", headers=bearer(tokens.client)).get_json()["key"]
    assert again == keys[tokens.client]  # stable: a receiver configures it once


def test_a_name_that_resolves_into_the_farm_network_is_refused_when_sent():
    # The check at submission sees a name; the one at sending sees the address connected to.
    receiver = Receiver()
    try:
        port = receiver.url.split(":")[2].split("/")[0]
        target = webhooks.Target(f"http://localhost:{port}/hook")
        with pytest.raises(webhooks.Undeliverable, match="loopback, private or special"):
            webhooks.post(target, b"{}", {}, timeout=5, allow_private=False)
        assert receiver.deliveries == []
        webhooks.post(target, b"{}", {}, timeout=5, allow_private=True)  # the same post, allowed: it arrives
        assert len(receiver.deliveries) == 1
    finally:
        receiver.close()
