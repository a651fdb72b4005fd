"""Long-polls without a cap (issue 9, item 5), against a live gunicorn gateway.

The attack: 140 parallel job long-polls from one client took every request thread of the
gateway, so /healthz timed out, another client's job list took 14.5 s and a worker's
heartbeat would have missed its lease. Now a gateway process holds at most
FRAMEFARM_MAX_WAITERS waiting requests, and a token at most FRAMEFARM_MAX_WAITERS_PER_TOKEN
per process; the rest are answered 429 with Retry-After at once, and the farm's own client
waits that long and asks again.
"""
from __future__ import annotations

import http.client
import json
import logging
import threading
import time
from urllib.parse import urlsplit

from apitools import bearer
from farmtools import sha256, wait_for
from framefarm.common.api import FarmAPI
from framefarm.common.http import Client
from framefarm.gateway.auth import digest

POLLS = 140
POLL_WAIT_S = 30  # the long-polls' own timeout: everything below must answer well before it
BOUND_S = 10.0  # generous: measured, these answer in milliseconds


def call(url: str, method: str, path: str, token: str, body: dict | None = None,
         timeout: float = POLL_WAIT_S + 30) -> tuple[int, dict[str, str], dict]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout)
    try:
        headers = bearer(token) | ({"Content-Type": "application/json"} if body is not None else {})
        conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, json.loads(resp.read() or b"null")
    finally:
        conn.close()


def timed(fn) -> tuple[float, tuple]:
    start = time.monotonic()
    out = fn()
    return time.monotonic() - start, out


def test_140_long_polls_from_one_client_starve_nothing(cluster, tokens, scenes, caplog):
    # One process of 16 threads holding at most 8 waiting requests (localfarm), 4 per token. One,
    # so the counts below are exact: the kernel hands a burst's connections to whichever
    # process of several accepts first, often all to one.
    cluster.env.update(FRAMEFARM_MAX_WAITERS_PER_TOKEN="4", FRAMEFARM_LOG_LEVEL="DEBUG")
    gw = cluster.add_gateway(processes=1)
    url = gw.url
    scene = scenes("--no-texture")
    api = FarmAPI(Client([url], tokens.client, discover=False))
    sha = sha256(scene.read_bytes())
    api.upload(sha, scene)
    job = api.submit({"manifest": {"scene.blend": sha}, "main": "scene.blend", "frames": "1-4", "chunk": 2},
                     "longpolls")
    status, _, reg = call(url, "POST", "/v1/workers", tokens.worker, {"name": "w", "blender_version": "3.4"})
    assert status == 201, reg
    poll_path = f"/v1/jobs/{job['id']}?wait={POLL_WAIT_S}&rev={job['rev']}"

    def admitted(token: str | None = None) -> int:
        """Long-polls the gateway let wait (its debug log; the job never changes meanwhile)."""
        party = f"party {digest(token)[:20]} " if token else "party "
        return gw.log_path.read_text(errors="replace").count("long-poll admitted for " + party)

    def refused() -> int:
        return gw.log_path.read_text(errors="replace").count(f'/v1/jobs/{job["id"]}" 429')

    answers: dict[str, list[tuple[int, dict[str, str], dict]]] = {tokens.client: [], tokens.admin: []}
    lock = threading.Lock()

    def long_poll(token: str) -> None:
        got = call(url, "GET", poll_path, token)
        with lock:
            answers[token].append(got)

    def burst(token: str, n: int) -> list[threading.Thread]:
        threads = [threading.Thread(target=long_poll, args=(token,), daemon=True) for _ in range(n)]
        for t in threads:
            t.start()
        return threads

    # One client's 140 polls: 4 wait, every other one is answered 429 at once.
    polls = burst(tokens.client, POLLS)
    wait_for(lambda: admitted(tokens.client) == 4 and len(answers[tokens.client]) == POLLS - 4, BOUND_S,
             "4 long-polls to wait and the rest to be answered")
    # An admin's polls of the same job fill the process's 8 slots; what is past them is refused too.
    others = burst(tokens.admin, 20)
    wait_for(lambda: admitted() == 8 and len(answers[tokens.admin]) == 20 - 4, BOUND_S,
             "the gateway process's waiting slots to fill")

    # Every slot full: health, another client's list and a worker's heartbeat all still answer at once.
    dt_health, (status, _, _) = timed(lambda: call(url, "GET", "/healthz", tokens.client, timeout=BOUND_S))
    assert status == 200
    dt_list, (status, _, listed) = timed(lambda: call(url, "GET", "/v1/jobs", tokens.client2, timeout=BOUND_S))
    assert status == 200 and listed["jobs"] == []
    dt_beat, (status, _, beat) = timed(lambda: call(url, "POST", f"/v1/workers/{reg['id']}/heartbeat",
                                                    tokens.worker, {"parts": []}, timeout=BOUND_S))
    assert status == 200, beat
    print(f"under {POLLS + 20} long-polls: /healthz {dt_health:.2f}s, another client's list {dt_list:.2f}s, "
          f"a heartbeat {dt_beat:.2f}s")
    assert max(dt_health, dt_list, dt_beat) < BOUND_S

    with lock:
        first, second = list(answers[tokens.client]), list(answers[tokens.admin])
    for got, setting in ((first, "FRAMEFARM_MAX_WAITERS_PER_TOKEN"), (second, "FRAMEFARM_MAX_WAITERS")):
        for status, headers, body in got:
            assert status == 429 and body["error"]["code"] == "too_many_waiting", body
            assert int(headers["retry-after"]) >= 1
        assert setting + ")" in got[0][2]["error"]["message"], got[0]

    # The farm's own client (CLI, add-on, worker) honours 429 + Retry-After: it asks again
    # until a slot frees, here when the job changes and every waiting poll answers.
    before = refused()
    watched: list = []
    watcher = threading.Thread(target=lambda: watched.append(api.job(job["id"], wait=POLL_WAIT_S, rev=job["rev"])),
                               daemon=True)
    with caplog.at_level(logging.INFO, logger="framefarm.client"):
        watcher.start()
        wait_for(lambda: refused() > before and "HTTP 429" in caplog.text, BOUND_S,
                 "the client's long-poll to be refused 429 and retried")
        api.cancel(job["id"])
        watcher.join(60)
    assert watched and watched[0]["status"] == "cancelled", watched
    for t in polls + others:
        t.join(60)
    waited = answers[tokens.client][len(first):] + answers[tokens.admin][len(second):]
    assert [status for status, _, _ in waited] == [200] * 8
