"""A job's actions (job_actions.py): pause, resume, retry, priority; and draining a worker
(drain.py). Through the API on a real Redis, then the CLI against a gateway under gunicorn.

Each action moves the job out of, into or within its Blender version's queue, so what a
worker's claim gets is the proof: a paused job hands out nothing while its leased parts
still count; a resumed one is back at its own place; a higher priority goes first; a
retried job renders its failed parts again; an action on a job in the wrong state is 409 and
changes nothing. Attacks (another client's job, a priority past the client range, another
role's token): security/test_attack_job_actions.py.
"""
from __future__ import annotations

import json

from apitools import (bearer, claim, expect_error, fail_part, farm_of, get_job, put_result, register_worker,
                      scene_bytes, scene_sha, submit, unchanged)
from dashtools import act, ok
from farmtools import framefarm_cli
from framefarm.gateway import cleanup, keys

__all__ = ["scene_bytes", "scene_sha"]  # fixtures, imported for pytest


def test_a_paused_job_hands_out_nothing_while_its_leased_parts_still_count(http, tokens, scene_sha):
    a = submit(http, tokens.client, scene_sha, frames="1-6", chunk=2)
    b = submit(http, tokens.client, scene_sha, frames="1-2", chunk=2)
    wid = register_worker(http, tokens.worker)
    a0 = claim(http, tokens.worker, wid)
    assert a0["job"] == a["id"]
    paused = ok(act(http, tokens.client, a["id"], "pause"))
    assert paused["paused"] is True and paused["status"] == "running"
    assert paused["waiting_reason"].startswith("paused")
    assert ok(act(http, tokens.client, a["id"], "pause"))["paused"] is True  # again: a no-op
    assert claim(http, tokens.worker, wid)["job"] == b["id"], "A is paused: B goes first"
    assert claim(http, tokens.worker, wid) is None
    assert put_result(http, tokens.worker, a0).status_code == 200, "a leased part of a paused job counts"
    assert get_job(http, tokens.client, a["id"])["frames"]["done"] == 2
    # A part handed back while paused goes back to the job's queue, not in line.
    resumed = ok(act(http, tokens.client, a["id"], "resume"))
    assert resumed["paused"] is False and resumed["waiting_reason"] is None
    a1 = claim(http, tokens.worker, wid)
    assert (a1["job"], a1["index"]) == (a["id"], 1)
    ok(act(http, tokens.client, a["id"], "pause"))
    assert fail_part(http, tokens.worker, a1, "flaky").get_json()["outcome"] == "requeued"
    assert claim(http, tokens.worker, wid) is None, "the requeued part waits for the resume"
    ok(act(http, tokens.client, a["id"], "resume"))
    assert [claim(http, tokens.worker, wid)["index"] for _ in range(2)] == [1, 2]
    assert ok(act(http, tokens.client, a["id"], "resume"))["paused"] is False  # not paused: a no-op


def test_a_paused_job_can_be_cancelled_and_an_ended_job_cannot_be_paused(http, tokens, scene_sha):
    a = submit(http, tokens.client, scene_sha)
    ok(act(http, tokens.client, a["id"], "pause"))
    cancelled = ok(act(http, tokens.client, a["id"], "cancel"))
    assert cancelled["status"] == "cancelled" and cancelled["paused"] is False
    for action, body in (("pause", {}), ("resume", {}), ("priority", {"priority": 3}), ("retry", {})):
        with unchanged(http):
            err = expect_error(act(http, tokens.client, a["id"], action, **body), 409, "wrong_state")
        assert "cancelled" in err["message"]


def test_a_higher_priority_moves_a_job_ahead_and_a_lower_one_behind(http, tokens, scene_sha):
    a = submit(http, tokens.client, scene_sha, frames="1-2", chunk=2)
    b = submit(http, tokens.client, scene_sha, frames="1-2", chunk=2)
    c = submit(http, tokens.client, scene_sha, frames="1-2", chunk=2)
    assert ok(act(http, tokens.client, c["id"], "priority", priority=5))["priority"] == 5
    assert ok(act(http, tokens.client, a["id"], "priority", priority=-1))["priority"] == -1
    ok(act(http, tokens.client, b["id"], "pause"))
    ok(act(http, tokens.client, b["id"], "priority", priority=7))  # paused: the new place waits
    wid = register_worker(http, tokens.worker)
    assert claim(http, tokens.worker, wid)["job"] == c["id"]
    ok(act(http, tokens.client, b["id"], "resume"))
    assert [claim(http, tokens.worker, wid)["job"] for _ in range(2)] == [b["id"], a["id"]]


def test_a_failed_job_retried_renders_only_its_unfinished_parts(http, tokens, scene_sha):
    job = submit(http, tokens.client, scene_sha, frames="1-6", chunk=2)
    w1, w2 = register_worker(http, tokens.worker), register_worker(http, tokens.worker)
    p0 = claim(http, tokens.worker, w1)
    assert put_result(http, tokens.worker, p0).status_code == 200
    p1 = claim(http, tokens.worker, w1)
    assert fail_part(http, tokens.worker, p1, "bad scene", deterministic=True).get_json()["outcome"] == "failed"
    failed = get_job(http, tokens.client, job["id"])
    assert failed["status"] == "failed"
    running = submit(http, tokens.client, scene_sha)
    claim(http, tokens.worker, w2)
    with unchanged(http):
        expect_error(act(http, tokens.client, running["id"], "retry"), 409, "wrong_state")
    ok(act(http, tokens.client, running["id"], "cancel"))

    again = ok(act(http, tokens.client, job["id"], "retry"))
    assert again["status"] == "running" and again["error"] is None and again["finished_at"] is None
    assert again["frames"]["done"] == 2, "the done part keeps its result"
    parts = [claim(http, tokens.worker, w1) for _ in range(2)]
    assert [(p["index"], p["attempts"]) for p in parts] == [(1, 0), (2, 0)]
    assert claim(http, tokens.worker, w1) is None
    for p in parts:
        assert put_result(http, tokens.worker, p).status_code == 200
    assert get_job(http, tokens.client, job["id"])["status"] == "assembling"


def test_a_retry_after_clean_up_let_go_of_the_job_renders_everything_again(http, tokens, scene_sha):
    farm = farm_of(http)
    job = submit(http, tokens.client, scene_sha, frames="1-4", chunk=2)
    wid = register_worker(http, tokens.worker)
    assert put_result(http, tokens.worker, claim(http, tokens.worker, wid)).status_code == 200
    fail_part(http, tokens.worker, claim(http, tokens.worker, wid), "boom", deterministic=True)
    cleanup.release_ended(farm, cleanup.Report())  # its part results deleted, its files let go
    assert farm.redis.zscore(keys.FILE_HOLDERS, job["id"]) is None
    again = ok(act(http, tokens.client, job["id"], "retry"))
    assert again["frames"]["done"] == 0 and again["status"] == "running"
    assert farm.redis.zscore(keys.FILE_HOLDERS, job["id"]) is not None, "its files are held again"
    assert farm.redis.zscore(keys.RECORDS_DUE, job["id"]) is None, "its records are no longer due"
    assert [claim(http, tokens.worker, wid)["index"] for _ in range(2)] == [0, 1]


def test_a_retry_whose_scene_files_were_deleted_is_refused(http, tokens, scene_sha):
    farm = farm_of(http)
    job = submit(http, tokens.client, scene_sha, frames="1-2", chunk=2)
    wid = register_worker(http, tokens.worker)
    fail_part(http, tokens.worker, claim(http, tokens.worker, wid), "boom", deterministic=True)
    cleanup.release_ended(farm, cleanup.Report())
    farm.storage.delete(keys.scene_file(scene_sha))
    with unchanged(http):
        err = expect_error(act(http, tokens.client, job["id"], "retry"), 409, "files_gone")
    assert "submit the scene again" in err["message"]


def test_an_admin_may_use_any_priority(http, tokens, scene_sha):
    job = submit(http, tokens.client, scene_sha)
    assert ok(act(http, tokens.admin, job["id"], "priority", priority=1000))["priority"] == 1000


def test_a_drained_worker_finishes_its_part_and_takes_no_more(http, tokens, scene_sha):
    submit(http, tokens.client, scene_sha, frames="1-6", chunk=2)
    wid, other = register_worker(http, tokens.worker, name="one"), register_worker(http, tokens.worker, name="two")
    part = claim(http, tokens.worker, wid)
    drained = ok(http.post(f"/v1/workers/{wid}/drain", headers=bearer(tokens.admin)))
    assert drained["drained"] is True and drained["state"] == "rendering" and drained["parts"] == [part["id"]]
    assert claim(http, tokens.worker, wid) is None
    assert claim(http, tokens.worker, other) is not None, "the other worker still takes parts"
    assert put_result(http, tokens.worker, part).status_code == 200
    listed = {w["id"]: w for w in ok(http.get("/v1/workers", headers=bearer(tokens.admin)))["workers"]}
    assert listed[wid]["state"] == "drained" and listed[wid]["parts_done"] == 1
    assert listed[other]["state"] == "rendering"
    assert ok(http.post(f"/v1/workers/{wid}/undrain", headers=bearer(tokens.admin)))["state"] == "idle"
    assert claim(http, tokens.worker, wid) is not None


def test_a_worker_kept_away_from_a_job_lists_it(http, tokens, scene_sha):
    job = submit(http, tokens.client, scene_sha, frames="1-6", chunk=2)
    wid = register_worker(http, tokens.worker)
    for _ in range(2):
        fail_part(http, tokens.worker, claim(http, tokens.worker, wid), "boom")
    listed = ok(http.get("/v1/workers", headers=bearer(tokens.admin)))["workers"]
    assert listed[0]["kept_away_from"] == [job["id"]] and listed[0]["parts_failed"] == 2


def test_the_cli_pauses_resumes_retries_reprioritises_and_drains_on_a_gunicorn_gateway(cluster, http, tokens,
                                                                                        scene_sha):
    cluster.add_gateway(processes=1)  # same Redis and storage as the test app that submits
    env = cluster.client_env()
    admin = {**env, "FRAMEFARM_TOKEN": tokens.admin}
    job = submit(http, tokens.client, scene_sha, frames="1-4", chunk=2)

    def cli(*args: str, environ: dict[str, str] = env) -> dict:
        res = framefarm_cli(*args, "--json", env=environ, timeout=60)
        assert res.returncode == 0, res.stderr
        return json.loads(res.stdout)

    assert cli("pause", job["id"])["paused"] is True
    assert cli("priority", job["id"], "4")["priority"] == 4
    assert cli("resume", job["id"])["paused"] is False
    refused = framefarm_cli("retry", job["id"], env=env, timeout=60)
    assert refused.returncode == 1 and "only a failed job can be retried" in refused.stderr
    assert "Traceback" not in refused.stderr
    too_high = framefarm_cli("priority", job["id"], "1000", env=env, timeout=60)
    assert too_high.returncode == 1 and "FRAMEFARM_CLIENT_PRIORITY_MIN/MAX" in too_high.stderr
    elsewhere = framefarm_cli("pause", job["id"], env={**env, "FRAMEFARM_TOKEN": tokens.client2}, timeout=60)
    assert elsewhere.returncode == 1 and "not found" in elsewhere.stderr

    wid = register_worker(http, tokens.worker, name="render-1")
    fail_part(http, tokens.worker, claim(http, tokens.worker, wid), "boom", deterministic=True)
    assert cli("retry", job["id"])["status"] == "running"
    assert cli("drain", wid, environ=admin)["drained"] is True
    listed = framefarm_cli("workers", env=admin, timeout=60)
    assert listed.returncode == 0 and wid in listed.stdout and "drained" in listed.stdout
    assert cli("undrain", wid, environ=admin)["state"] == "idle"
    denied = framefarm_cli("workers", env=env, timeout=60)
    assert denied.returncode == 1 and "admin" in denied.stderr
