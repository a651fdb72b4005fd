"""GET /metrics: who may read it, and what it says (Flask's test client on a real Redis; the
counters moving during a real job on gunicorn with a Blender worker: test_dashboard.py)."""
from __future__ import annotations

import dataclasses

from prometheus_client.parser import text_string_to_metric_families

from apitools import (bearer, claim, fail_part, put_result, register_worker, scene_bytes, scene_sha, submit, upload)
from framefarm.gateway.app import create_app

__all__ = ["scene_bytes", "scene_sha"]  # fixtures, imported for pytest


def samples(text: str) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def scrape(http, **kwargs) -> dict[tuple[str, tuple], float]:
    resp = http.get("/metrics", **kwargs)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.headers["Content-Type"].startswith("text/plain; version=")
    return samples(resp.get_data(as_text=True))


def test_metrics_are_for_the_metrics_token_an_admin_or_an_allowed_address(settings, tokens):
    http = create_app(dataclasses.replace(settings, metrics_token="s3cret", metrics_allow="10.0.0.0/8")).test_client()
    far = {"REMOTE_ADDR": "192.0.2.7"}
    for headers in ({}, bearer("wrong"), bearer(tokens.client), bearer(tokens.worker)):
        resp = http.get("/metrics", headers=headers, environ_base=far)
        assert resp.status_code == 403 and resp.get_json()["error"]["code"] == "forbidden"
    for headers, environ in ((bearer("s3cret"), far), (bearer(tokens.admin), far), ({}, {"REMOTE_ADDR": "10.1.2.3"})):
        assert http.get("/metrics", headers=headers, environ_base=environ).status_code == 200
    default = create_app(settings).test_client()  # loopback only by default
    assert default.get("/metrics").status_code == 200  # the test client comes from 127.0.0.1
    assert default.get("/metrics", environ_base=far).status_code == 403


def test_the_farms_state_and_totals_move_as_a_job_runs(http, tokens, scene_bytes):
    before = scrape(http)
    job = submit(http, tokens.client, upload(http, tokens.client, scene_bytes), frames="1-6", chunk=2)
    queued = scrape(http)
    assert queued[("framefarm_queued_parts", (("blender_version", "3.4"),))] == 3
    assert queued[("framefarm_queued_frames", ())] == 6
    assert queued[("framefarm_queued_work_seconds", ())] == 6 * 30.0  # unmeasured: 30 s a frame
    assert queued[("framefarm_jobs", (("status", "queued"),))] == before[("framefarm_jobs", (("status", "queued"),))] + 1
    wid = register_worker(http, tokens.worker)
    part = claim(http, tokens.worker, wid)
    running = scrape(http)
    assert running[("framefarm_leased_parts", ())] == 1
    assert running[("framefarm_workers", (("state", "rendering"),))] == 1
    assert fail_part(http, tokens.worker, part, "flaky").status_code == 200
    part = claim(http, tokens.worker, wid)
    assert put_result(http, tokens.worker, part).status_code == 200
    after = scrape(http)
    assert after[("framefarm_retries_total", ())] == before.get(("framefarm_retries_total", ()), 0) + 1
    assert after[("framefarm_part_failures_total", ())] == before.get(("framefarm_part_failures_total", ()), 0) + 1
    assert after[("framefarm_frames_rendered_total", ())] >= 2
    assert after[("framefarm_queued_frames", ())] == 4
    route = (("method", "PUT"), ("route", "/v1/parts/<pid>/result"), ("status", "200"))
    assert after[("framefarm_request_seconds_count", route)] >= 1
    assert after[("framefarm_uploaded_bytes_total", ())] > before.get(("framefarm_uploaded_bytes_total", ()), 0)
    # Two claims that got a part, timed at Redis (the claim route's requests would include waits).
    got = ("framefarm_claim_seconds_count", (("outcome", "part"),))
    assert after[got] == before.get(got, 0) + 2
    assert job["id"]
