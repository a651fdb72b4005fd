"""A worker cannot read, complete, fail or hand back another worker's part (issue 9, item 4).

Reproduced before the fix: lease tokens were a counter (`17`, `18`, ...) and a part call
checked only the token, so worker token W3 guessed W2's token, read its scene, completed
it with a forged zip that the client then downloaded, and failed its job with one
`/failure {"deterministic": true}`. Now a lease is bound to the worker id that claimed it,
a worker id to the token that registered it, and the token is unguessable; every part call
must show all three. Each attack runs against a live gunicorn gateway and must leave Redis
and storage exactly as they were: the part still leased to W2, its job running, no result.
"""
from __future__ import annotations

import re
from types import SimpleNamespace

import pytest

from apitools import (bearer, claim, expect_error, frames_zip, get_job, register_worker, scene_bytes, submit,
                      unchanged, upload)
from framefarm.gateway import keys
from framefarm.gateway.auth import create_token
from livetools import live_gateway

__all__ = ["scene_bytes"]  # a fixture, imported for pytest


@pytest.fixture
def farm(cluster, scene_bytes):
    """A job of two parts; worker W2 leased part 0, worker W3 (another token) part 1."""
    # The cluster's 4 s leases would run out during an attack's dozens of calls on a loaded
    # machine; nothing here waits for an expiry.
    cluster.env["FRAMEFARM_LEASE_S"] = "120"
    http = live_gateway(cluster)
    r = http.redis
    w2, w3 = create_token(r, "worker"), create_token(r, "worker")
    client = cluster.tokens.client
    sha = upload(http, client, scene_bytes)
    job = submit(http, client, sha, frames="1-4", chunk=2)
    wid2, wid3 = register_worker(http, w2, name="w2"), register_worker(http, w3, name="w3")
    mine = claim(http, w2, wid2)
    theirs = claim(http, w3, wid3)
    assert mine and theirs and mine["id"] != theirs["id"]
    return SimpleNamespace(http=http, r=r, client=client, w2=w2, w3=w3, wid2=wid2, wid3=wid3, job=job,
                           part=mine, own=theirs, sha=sha)


def part_calls(farm) -> list[tuple[str, str, dict]]:
    """Every call a worker makes about a part: (method, path, request arguments)."""
    pid = farm.part["id"]
    return [("GET", f"/v1/parts/{pid}/scene", {}),
            ("GET", f"/v1/parts/{pid}/files/{farm.sha}", {}),
            ("PUT", f"/v1/parts/{pid}/result", {"data": frames_zip(farm.part["frames"])}),
            ("POST", f"/v1/parts/{pid}/result/upload", {"json": {"size": 100}}),
            ("POST", f"/v1/parts/{pid}/result", {"json": {"id": "0" * 16}}),
            ("POST", f"/v1/parts/{pid}/failure", {"json": {"message": "forged", "deterministic": True}}),
            ("POST", f"/v1/parts/{pid}/release", {})]


def attack(farm, worker_id: str, lease_token: str, status: int, code: str) -> None:
    """Every part call on W2's part, made with W3's token, is refused and changes nothing."""
    with unchanged(farm.http):
        for method, path, kw in part_calls(farm):
            headers = {**bearer(farm.w3), "X-Worker-Id": worker_id, "X-Lease-Token": lease_token}
            resp = farm.http.open(path, method, headers=headers, **kw)
            expect_error(resp, status, code)
    still_w2s(farm)


def still_w2s(farm) -> None:
    part = farm.r.hgetall(keys.part(farm.part["id"]))
    assert (part["state"], part["worker"], part["token"]) == ("leased", farm.wid2, farm.part["token"])
    assert get_job(farm.http, farm.client, farm.job["id"])["status"] == "running"
    assert not (farm.http.application.extensions["framefarm"].storage.root / "parts").exists(), "no result stored"


def test_w2s_lease_token_is_refused_with_w3s_own_worker(farm):
    attack(farm, farm.wid3, farm.part["token"], 409, "stale_lease")


def test_w2s_worker_id_is_refused_to_another_token_even_with_the_right_lease_token(farm):
    attack(farm, farm.wid2, farm.part["token"], 403, "not_your_worker")


def test_w3s_own_lease_does_not_reach_w2s_part(farm):
    attack(farm, farm.wid3, farm.own["token"], 409, "stale_lease")


def test_a_guessed_token_is_refused(farm):
    for guess in ("1", "2", "0", "", farm.part["token"].upper(), farm.part["token"] + "0"):
        attack(farm, farm.wid3, guess, 409, "stale_lease")


def test_lease_tokens_are_unguessable_but_keep_the_fence_order(farm):
    """128 random bits after a fence number that only grows (the order stays readable)."""
    tokens = [farm.part["token"], farm.own["token"]]
    found = [re.fullmatch(r"(\d+)-([0-9a-f]{32})", t) for t in tokens]
    assert all(found), tokens
    assert int(found[1][1]) > int(found[0][1]), "a later lease has a larger fence number"
    assert found[0][2] != found[1][2]
    # The fence number alone, the old form of a token, is refused.
    attack(farm, farm.wid3, found[0][1], 409, "stale_lease")


def test_heartbeats_renew_only_the_callers_own_leases(farm):
    pid = farm.part["id"]
    held = [{"id": pid, "token": farm.part["token"]}]
    before = farm.r.hgetall(keys.part(pid))
    resp = farm.http.post(f"/v1/workers/{farm.wid2}/heartbeat", json={"parts": held}, headers=bearer(farm.w3))
    expect_error(resp, 403, "not_your_worker")
    resp = farm.http.post(f"/v1/workers/{farm.wid3}/heartbeat", json={"parts": held}, headers=bearer(farm.w3))
    assert resp.get_json() == {"abandon": [pid]}, "W3 is told the part is not its own"
    assert farm.r.hgetall(keys.part(pid)) == before, "W2's lease is neither renewed nor changed"
    expect_error(farm.http.post(f"/v1/workers/{farm.wid2}/claim", json={"wait": 0}, headers=bearer(farm.w3)),
                 403, "not_your_worker")
    still_w2s(farm)


def test_after_every_attack_w2_still_completes_its_part(farm):
    attack(farm, farm.wid2, farm.part["token"], 403, "not_your_worker")
    attack(farm, farm.wid3, farm.part["token"], 409, "stale_lease")
    headers = {**bearer(farm.w2), "X-Worker-Id": farm.wid2, "X-Lease-Token": farm.part["token"]}
    resp = farm.http.put(f"/v1/parts/{farm.part['id']}/result", data=frames_zip(farm.part["frames"]),
                         headers=headers)
    assert resp.get_json() == {"ok": True, "job_status": "running"}
    assert get_job(farm.http, farm.client, farm.job["id"])["frames"]["done"] == 2
