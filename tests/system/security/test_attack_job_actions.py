"""Attacks on a job's actions and on draining (job_actions.py, drain.py): another client's job,
another role's token, a priority past what the token may use. Each is refused and changes
nothing."""
from __future__ import annotations

import pytest

from apitools import bearer, expect_error, register_worker, scene_bytes, scene_sha, submit, unchanged
from dashtools import act, ok

__all__ = ["scene_bytes", "scene_sha"]  # fixtures, imported for pytest


def test_another_clients_job_is_not_found_for_every_action(http, tokens, scene_sha):
    job = submit(http, tokens.client, scene_sha)
    for action, body in (("pause", {}), ("resume", {}), ("retry", {}), ("priority", {"priority": 1})):
        with unchanged(http):
            expect_error(act(http, tokens.client2, job["id"], action, **body), 404, "not_found")
            expect_error(act(http, tokens.worker, job["id"], action, **body), 403, "forbidden")
            expect_error(http.post(f"/v1/jobs/{job['id']}/{action}", json=body or None), 401, "unauthorized")
    assert ok(act(http, tokens.admin, job["id"], "pause"))["paused"] is True, "an admin acts on any job"


@pytest.mark.parametrize("body, status, code", [
    ({"priority": 1000}, 422, "priority_not_allowed"),
    ({"priority": -1000}, 422, "priority_not_allowed"),
    ({"priority": 1001}, 400, "bad_priority"),
    ({"priority": "high"}, 400, "bad_priority"),
    ({"priority": 2.5}, 400, "bad_priority"),
    ({}, 400, None),
])
def test_a_priority_outside_what_the_token_may_use_is_refused(http, tokens, scene_sha, body, status, code):
    job = submit(http, tokens.client, scene_sha)
    with unchanged(http):
        expect_error(http.post(f"/v1/jobs/{job['id']}/priority", json=body, headers=bearer(tokens.client)),
                     status, code)


def test_only_an_admin_sees_or_drains_workers(http, tokens):
    wid = register_worker(http, tokens.worker)
    for token in (tokens.client, tokens.worker):
        with unchanged(http):
            expect_error(http.get("/v1/workers", headers=bearer(token)), 403, "forbidden")
            expect_error(http.post(f"/v1/workers/{wid}/drain", headers=bearer(token)), 403, "forbidden")
    with unchanged(http):
        expect_error(http.post("/v1/workers/w-000000000000/drain", headers=bearer(tokens.admin)), 404,
                     "unknown_worker")
