"""The order parts go out in: priority first, then submission, then part index.

The shared queue per Blender version holds jobs, each job its own queue of parts
(lua/claim.lua); these tests pin the order a worker sees through that two-level queue,
including a part handed back after its job left the line and a job that ends while queued.
"""
from __future__ import annotations

from apitools import (bearer, claim, fail_part, lease, register_worker, scene_bytes, scene_sha, submit)

__all__ = ["scene_bytes", "scene_sha"]  # fixtures, imported for pytest


def names(parts: list[dict], jobs: dict[str, str]) -> list[str]:
    """'A0', 'B1'...: the job's letter and the part's index."""
    return [f"{jobs[p['job']]}{p['index']}" for p in parts]


def test_parts_go_out_by_priority_then_submission_then_index(http, tokens, scene_sha):
    a = submit(http, tokens.client, scene_sha, frames="1-4", chunk=2)
    b = submit(http, tokens.client, scene_sha, frames="1-4", chunk=2, priority=5)
    c = submit(http, tokens.client, scene_sha, frames="1-2", chunk=2)
    d = submit(http, tokens.client, scene_sha, frames="1-2", chunk=2, priority=-3)
    jobs = {a["id"]: "A", b["id"]: "B", c["id"]: "C", d["id"]: "D"}
    wid = register_worker(http, tokens.worker)
    got = [claim(http, tokens.worker, wid) for _ in range(6)]
    assert names(got, jobs) == ["B0", "B1", "A0", "A1", "C0", "D0"]
    assert claim(http, tokens.worker, wid) is None


def test_a_part_handed_back_goes_out_again_before_younger_jobs(http, tokens, scene_sha):
    a = submit(http, tokens.client, scene_sha, frames="1-4", chunk=2)
    b = submit(http, tokens.client, scene_sha, frames="1-4", chunk=2)
    jobs = {a["id"]: "A", b["id"]: "B"}
    wid = register_worker(http, tokens.worker)
    a0, a1 = claim(http, tokens.worker, wid), claim(http, tokens.worker, wid)
    assert names([a0, a1], jobs) == ["A0", "A1"]  # job A has left the line: no part of it is queued
    resp = http.post(f"/v1/parts/{a1['id']}/release", headers={**bearer(tokens.worker), **lease(a1)})
    assert resp.get_json() == {"outcome": "requeued"}
    assert names([claim(http, tokens.worker, wid) for _ in range(3)], jobs) == ["A1", "B0", "B1"]


def test_a_job_that_ends_leaves_the_line_and_a_kept_away_worker_gets_the_next_job(http, tokens, scene_sha):
    a = submit(http, tokens.client, scene_sha, frames="1-6", chunk=2)
    b = submit(http, tokens.client, scene_sha, frames="1-2", chunk=2)
    c = submit(http, tokens.client, scene_sha, frames="1-2", chunk=2)
    jobs = {a["id"]: "A", b["id"]: "B", c["id"]: "C"}
    first, other = register_worker(http, tokens.worker), register_worker(http, tokens.worker)
    for _ in range(2):  # `first` fails job A twice (block_after = 2) and is kept away from it
        assert fail_part(http, tokens.worker, claim(http, tokens.worker, first), "boom").status_code == 200
    assert names([claim(http, tokens.worker, first)], jobs) == ["B0"]
    assert http.post(f"/v1/jobs/{c['id']}/cancel", headers=bearer(tokens.client)).status_code == 200
    assert claim(http, tokens.worker, first) is None, "C was cancelled; A is kept from this worker"
    assert names([claim(http, tokens.worker, other) for _ in range(3)], jobs) == ["A0", "A1", "A2"]
