"""A review of issue 9's defences, attacking them as a hostile worker or client would.

Each test is an attack that worked after the first round of fixes, and shows that it
fails now and changes nothing (real redis-server).
"""
from __future__ import annotations

import dataclasses
import time

from apitools import bearer, claim, expect_error, register_worker, scene_bytes, scene_sha, submit, unchanged
from framefarm.gateway import contract, keys
from framefarm.gateway.app import create_app
from framefarm.gateway.auth import create_token

__all__ = ["scene_bytes", "scene_sha"]  # fixtures, imported for pytest


def test_a_heartbeat_cannot_block_redis_with_a_long_list_of_leases(http, tokens, scene_sha):
    """Before: a heartbeat listing its own lease 180,000 times (a 13 MB body, under the 16 MiB
    cap) was checked entry by entry in one Lua call, blocking Redis, and so the whole farm,
    for 2.6 s, after the gateway spent 18 s of CPU checking every entry against the spec; a
    worker token could repeat it without end. A worker holds one part per slot, at most 64:
    a longer list is refused at the spec's `maxItems`, before any entry is looked at."""
    submit(http, tokens.client, scene_sha, frames="1-4", chunk=2)
    wid = register_worker(http, tokens.worker)
    part = claim(http, tokens.worker, wid)
    assert part is not None
    r = http.application.extensions["framefarm"].redis
    ref = {"id": part["id"], "token": part["token"]}
    r.slowlog_reset()
    with unchanged(http):
        resp = http.post(f"/v1/workers/{wid}/heartbeat", json={"parts": [ref] * 10_000},
                         headers=bearer(tokens.worker))
        err = expect_error(resp, 400)
    assert "at most 64" in err["message"], err
    assert not [e for e in r.slowlog_get(10) if "EVALSHA" in str(e["command"])], "no slow Lua call ran"
    # A worker's own heartbeat, every slot full, still renews its lease.
    before = int(r.hget(keys.part(part["id"]), "deadline"))
    time.sleep(0.01)  # a clock tick, so the renewed deadline differs; not synchronisation
    resp = http.post(f"/v1/workers/{wid}/heartbeat", json={"parts": [ref] * 64}, headers=bearer(tokens.worker))
    assert resp.status_code == 200 and resp.get_json() == {"abandon": []}, resp.get_json()
    assert int(r.hget(keys.part(part["id"]), "deadline")) > before


def test_no_body_is_read_for_a_caller_without_a_token(http, tokens, monkeypatch):
    """Before: every JSON body was parsed and checked against the spec before its token was
    looked at, so anyone, without a token and without a rate limit, made a gateway read 16 MiB
    of JSON (seconds of CPU here) per request only to answer 401. Now the token comes first;
    the answers are the same (401/403 before 400), and a body is read only for a caller who
    may use the operation, counted once against its rate limit."""
    parsed: list[int] = []
    real = contract._strict_json

    def counting(value: bytes):  # the real parser, counted
        parsed.append(len(value))
        return real(value)

    monkeypatch.setattr(contract, "_strict_json", counting)
    body = b"[" + b"0," * 4_000_000 + b"0]"  # 8 MB: fine JSON, but not the object the spec wants
    for headers in ({}, bearer("ff_c_" + "x" * 43), bearer(tokens.client)):
        resp = http.post(f"/v1/workers/w-{'0' * 12}/heartbeat", data=body, content_type="application/json",
                         headers=headers)
        expect_error(resp, 403 if headers.get("Authorization", "").endswith(tokens.client) else 401)
    assert parsed == [], "no body was read"
    resp = http.post(f"/v1/workers/w-{'0' * 12}/heartbeat", data=body, content_type="application/json",
                     headers=bearer(tokens.worker))
    expect_error(resp, 400)
    assert parsed == [len(body)]


def _hgetalls(r) -> int:
    return int(r.info("commandstats").get("cmdstat_hgetall", {}).get("calls", 0))


def test_many_registered_workers_do_not_make_each_job_view_read_them_all(http, tokens, scene_sha):
    """Before: a job's view asks why it waits, reading every live worker's record twice, so a
    worker token that registered 2,000 workers (3.7 s of requests, nothing limits them) made
    one client's list of 30 jobs take 20.7 s (120,000 reads from Redis). Now the workers are
    read once per request: the list reads each worker once, whatever the number of jobs."""
    jobs, fake = 20, 300
    for _ in range(jobs):
        submit(http, tokens.client, scene_sha, frames="1-2", chunk=1)
    for i in range(fake):  # too old to open the scene: every job waits, and says why
        register_worker(http, tokens.worker, version="3.0", name=f"fake{i}")
    r = http.application.extensions["framefarm"].redis
    before = _hgetalls(r)
    resp = http.get("/v1/jobs", headers=bearer(tokens.client))
    assert resp.status_code == 200
    listed = resp.get_json()["jobs"]
    assert len(listed) == jobs and all("no live worker runs" in j["waiting_reason"] for j in listed), listed[0]
    reads = _hgetalls(r) - before
    assert reads <= fake + jobs, f"{reads} worker and job records read for one list"


def test_a_worker_token_registers_a_bounded_number_of_live_workers(settings, tokens):
    """Before: nothing bounded the workers one token registered (2,000 in 3.7 s), each a
    Redis hash that every job view and submission read, and each its own party for the caps
    on waiting claims. Now a token has at most FRAMEFARM_MAX_WORKERS_PER_TOKEN live workers;
    one that unregisters or goes silent frees its place, and other tokens are not affected."""
    http = create_app(dataclasses.replace(settings, max_workers_per_token=3), background=False).test_client()
    r = http.application.extensions["framefarm"].redis
    mine = [register_worker(http, tokens.worker, name=f"w{i}") for i in range(3)]
    with unchanged(http):
        resp = http.post("/v1/workers", json={"name": "one too many", "blender_version": "3.4.1"},
                         headers=bearer(tokens.worker))
        err = expect_error(resp, 429, "too_many_workers")
    assert "FRAMEFARM_MAX_WORKERS_PER_TOKEN" in err["message"] and "Retry-After" not in resp.headers
    assert len(r.zrange(keys.WORKERS, 0, -1)) == 3
    other = create_token(r, "worker")
    register_worker(http, other, name="another token's")
    # An unregistered worker frees its place, and so does one whose record expired.
    assert http.delete(f"/v1/workers/{mine[0]}", headers=bearer(tokens.worker)).status_code == 200
    register_worker(http, tokens.worker, name="after an unregister")
    r.delete(keys.worker(mine[1]))  # what its record's expiry does, worker_timeout_s after its last heartbeat
    register_worker(http, tokens.worker, name="after an expiry")
    expect_error(http.post("/v1/workers", json={"name": "again", "blender_version": "3.4.1"},
                           headers=bearer(tokens.worker)), 429, "too_many_workers")
