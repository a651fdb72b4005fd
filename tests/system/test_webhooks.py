"""Webhooks (issue 12, item 5) on a live farm: gunicorn gateways delivering from their
background loop to real HTTP receivers on this machine."""
from __future__ import annotations

import zipfile

import pytest
import requests

from farmtools import framefarm_cli, wait_for
from framefarm.client.submission import submit_scene
from framefarm.common.api import FarmAPI
from framefarm.common.http import Client
from webhooktools import Hanging, Receiver


@pytest.fixture
def receivers():
    made: list = []

    def make(kind=Receiver, **kw):
        made.append(kind(**kw))
        return made[-1]

    yield make
    for r in made:
        r.close()


def _api(cluster, token: str) -> FarmAPI:
    return FarmAPI(Client(cluster.urls, token, discover=False))


def _submit(cluster, scenes, notify, frames: str = "1-2"):
    api = _api(cluster, cluster.tokens.client)
    job, _ = submit_scene(api, scenes("--no-texture"), frames=frames, chunk=1, notify=notify)
    return api, job


def test_a_rendered_job_posts_a_signed_payload_with_its_download_link(cluster, scenes, receivers, tmp_path):
    cluster.add_gateway()
    cluster.add_worker()
    hook = receivers()
    api, job = _submit(cluster, scenes, hook.url)
    wait_for(lambda: hook.deliveries, 120, "the job's webhook")
    d = hook.deliveries[0]
    body = d.json
    assert d.headers["x-framefarm-event"] == "job.done" and body["event"] == "job.done"
    assert body["job"]["id"] == job["id"] and body["job"]["status"] == "done"
    assert body["job"]["frames_done"] == body["job"]["frames_total"] == 2
    assert d.signed_with(api.webhook_key())
    assert not d.signed_with(_api(cluster, cluster.tokens.client2).webhook_key())  # another client's key
    # The link needs no token, and it is the job's zip.
    zpath = tmp_path / "job.zip"
    zpath.write_bytes(requests.get(body["download_url"], timeout=30).content)
    with zipfile.ZipFile(zpath) as zf:
        assert len([n for n in zf.namelist() if n.endswith(".png")]) == 2
    # The thumbnail: the last frame's small preview, through its own signed link (no token either).
    assert f"/v1/preview/{job['id']}/2?" in body["thumbnail_url"]
    thumb = requests.get(body["thumbnail_url"], timeout=30)
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert thumb.content.startswith(b"\xff\xd8\xff")
    assert len(hook.deliveries) == 1  # delivered once


def test_cancel_notifies_the_job_and_the_farm_subscriptions_in_their_formats(cluster, scenes, receivers):
    cluster.add_gateway()
    discord, slack = receivers(), receivers()
    env = cluster.client_env() | {"FRAMEFARM_TOKEN": cluster.tokens.admin}
    added = framefarm_cli("webhooks", "add", slack.url, "--format", "slack", "--json", env=env)
    assert added.returncode == 0, added.stderr
    listed = framefarm_cli("webhooks", "list", env=env)
    assert slack.url in listed.stdout
    # A client may read its key, not the farm's subscriptions.
    refused = framefarm_cli("webhooks", "list", env=cluster.client_env())
    assert refused.returncode == 1 and "admin" in refused.stderr
    api, job = _submit(cluster, scenes, {"url": discord.url, "format": "discord"})
    api.cancel(job["id"])
    wait_for(lambda: discord.deliveries and slack.deliveries, 30, "both webhooks")
    assert "cancelled" in discord.deliveries[0].json["content"] and job["id"] in discord.deliveries[0].json["content"]
    assert "cancelled" in slack.deliveries[0].json["text"]
    assert discord.deliveries[0].signed_with(api.webhook_key())
    # The farm-wide subscription is signed with the admin's key, not the client's.
    admin_key = _api(cluster, cluster.tokens.admin).webhook_key()
    assert slack.deliveries[0].signed_with(admin_key) and not slack.deliveries[0].signed_with(api.webhook_key())


def test_a_failing_receiver_is_tried_again_with_the_same_delivery(cluster, scenes, receivers):
    cluster.add_gateway()
    flaky = receivers(statuses=(500, 503, 200))
    api, job = _submit(cluster, scenes, flaky.url)
    api.cancel(job["id"])
    wait_for(lambda: len(flaky.deliveries) >= 3, 60, "three tries")
    ids = {d.headers["x-framefarm-delivery"] for d in flaky.deliveries}
    assert len(ids) == 1 and len(flaky.deliveries) == 3  # the third succeeded: no fourth


def test_a_receiver_that_hangs_holds_up_no_other_webhook(cluster, scenes, receivers):
    # Each try waits a minute for an answer: a pool held by the hanging receiver would hold
    # the good one back that long, past the wait below.
    cluster.env["FRAMEFARM_WEBHOOK_TIMEOUT_S"] = "60"
    cluster.add_gateway(processes=1)
    hang, good = receivers(Hanging), receivers()
    admin = _api(cluster, cluster.tokens.admin)
    admin.add_webhook(hang.url)
    jobs = [_submit(cluster, scenes, good.url) for _ in range(6)]
    for api, job in jobs:
        api.cancel(job["id"])
    wait_for(lambda: len(good.deliveries) == 6, 30, "the good receiver's six webhooks")
    assert len(hang.held) == 1  # one try in flight to the hanging host, not one per job
    assert requests.get(cluster.urls[0] + "/healthz", timeout=5).status_code == 200


def test_a_redirect_is_not_followed(cluster, scenes, receivers):
    cluster.add_gateway()
    target = receivers()
    redirecting = receivers(statuses=(302,), redirect_to=target.url)
    api, job = _submit(cluster, scenes, redirecting.url)
    api.cancel(job["id"])
    wait_for(lambda: len(redirecting.deliveries) >= 2, 30, "a second try after the redirect")
    assert target.deliveries == []
