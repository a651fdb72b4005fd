"""Each gateway process remembers tokens it verified (auth.TokenCache, FRAMEFARM_TOKEN_CACHE_S),
so a worker's claims and results skip the token's Redis lookup. What an attacker would try
against that: keep using a token after it was revoked or deleted, keep it alive by using it,
or have a guessed token remembered. The cache's clock is the test's, so the bound is checked
exactly, not by sleeping. And a result sent in its result request (the client's inline path
for small results) is bounded as any upload is.
"""
from __future__ import annotations

import dataclasses

import pytest

from apitools import (bearer, claim, expect_error, put_result, register_worker, scene_bytes, scene_sha,  # noqa: F401
                      submit)
from framefarm.gateway import auth, keys
from framefarm.gateway.app import create_app

TTL = 5.0  # FRAMEFARM_TOKEN_CACHE_S as a farm would set it (the default, 0, keeps nothing)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clocked(settings):
    app = create_app(dataclasses.replace(settings, token_cache_s=TTL))
    cache = app.extensions[auth.TOKENS]
    cache.clock = Clock()
    return app.test_client(), cache.clock


def jobs(http, token: str) -> int:
    return http.get("/v1/jobs", headers=bearer(token)).status_code


def test_a_revoked_token_is_refused_once_its_bound_has_passed_however_often_it_is_used(clocked, tokens,
                                                                                       redis_client):
    http, clock = clocked
    assert jobs(http, tokens.client) == 200  # looked up, and remembered
    auth.revoke_token(redis_client, tokens.client)
    for _ in range(4):  # use within the bound does not extend it: it counts from the lookup
        clock.now += TTL / 5
        assert jobs(http, tokens.client) == 200, "within FRAMEFARM_TOKEN_CACHE_S the token may still act"
    clock.now += TTL / 5  # exactly the bound after the lookup
    expect_error(http.get("/v1/jobs", headers=bearer(tokens.client)), 401, "unauthorized")
    clock.now += 3600
    expect_error(http.get("/v1/jobs", headers=bearer(tokens.client)), 401, "unauthorized")


def test_a_deleted_worker_token_cannot_claim_past_its_bound(clocked, tokens, redis_client):
    http, clock = clocked
    wid = register_worker(http, tokens.worker)
    redis_client.delete(keys.token(auth.digest(tokens.worker)))  # deleted behind the gateway's back
    clock.now += TTL
    resp = http.post(f"/v1/workers/{wid}/claim", json={"wait": 0}, headers=bearer(tokens.worker))
    expect_error(resp, 401, "unauthorized")


def test_an_unknown_token_is_never_remembered(clocked, redis_client):
    http, _ = clocked
    guess = "ff_c_" + "g" * 43
    for _ in range(3):
        expect_error(http.get("/v1/jobs", headers=bearer(guess)), 401, "unauthorized")
    # Created (by an admin) after it was tried: it works at once, no refusal was kept either.
    redis_client.hset(keys.token(auth.digest(guess)), mapping={"role": "client", "name": "late"})
    assert jobs(http, guess) == 200
    assert len(http.application.extensions[auth.TOKENS]._known) == 1


def test_with_the_cache_off_a_revoked_token_is_refused_at_once(settings, tokens, redis_client):
    http = create_app(dataclasses.replace(settings, token_cache_s=0)).test_client()
    assert jobs(http, tokens.client) == 200
    auth.revoke_token(redis_client, tokens.client)
    expect_error(http.get("/v1/jobs", headers=bearer(tokens.client)), 401, "unauthorized")


def test_a_flood_of_tokens_does_not_grow_the_cache_past_its_bound(settings, redis_client):
    app = create_app(dataclasses.replace(settings, token_cache_s=TTL))
    cache = app.extensions[auth.TOKENS]
    cache.max_entries = 10
    http = app.test_client()
    for _ in range(25):
        assert jobs(http, auth.create_token(redis_client, "client")) == 200
        assert len(cache._known) <= 10


def test_a_result_sent_inline_is_bounded_like_an_upload(http, tokens, scene_sha, settings):
    """The client sends a small result in its result request (common/api.py INLINE_RESULT_BYTES);
    the gateway takes no more than FRAMEFARM_MAX_UPLOAD_BYTES that way, whatever the client says."""
    submit(http, tokens.client, scene_sha, frames="1-1", chunk=1)
    wid = register_worker(http, tokens.worker)
    part = claim(http, tokens.worker, wid)
    assert part is not None
    err = expect_error(put_result(http, tokens.worker, part, b"x" * (settings.max_upload_bytes + 1)), 413)
    assert str(settings.max_upload_bytes) in err["message"] or "FRAMEFARM_MAX_UPLOAD_BYTES" in err["message"], err
    assert put_result(http, tokens.worker, part).status_code == 200  # the lease still stands: nothing counted
