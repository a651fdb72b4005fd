"""A farm upgraded with jobs in its queue loses none of them (gateway/upgrade.py).

The first Redis layout queued parts (a version's queue held part ids, each part hash
its score); this one queues jobs. The test writes jobs through today's API, rewrites
them into the first layout exactly as its create_job script stored them, runs the
upgrade, and checks that every part is claimed, in the old order, and that a part
leased across the upgrade can still be handed back and claimed again.
"""
from __future__ import annotations

from apitools import (bearer, claim, expect_error, farm_of, get_job, heartbeat, lease, part_fields, put_result,
                      register_worker, scene_bytes, scene_sha, submit)
from framefarm.gateway import keys, upgrade

__all__ = ["scene_bytes", "scene_sha"]  # fixtures, imported for pytest


def to_first_layout(farm, job_id: str) -> None:
    """What the first layout's create_job.lua stored for this job: no job queue and no
    job score; each queued part in its version's queue, scored submission order + index."""
    r = farm.redis
    job = r.hgetall(keys.job(job_id))
    q = keys.queue(job["min_version"])
    base = int(job["score"])
    for i in range(int(job["parts_total"])):
        r.hset(keys.part(keys.part_id(job_id, i)), "score", base + i)
    for idx in r.zrange(keys.job_queue(job_id), 0, -1):
        r.zadd(q, {keys.part_id(job_id, int(idx)): base + int(idx)})
    r.zrem(q, job_id)
    r.delete(keys.job_queue(job_id))
    r.hdel(keys.job(job_id), "score")


def test_jobs_queued_in_the_first_layout_are_all_claimed_after_the_upgrade(http, tokens, scene_sha):
    farm = farm_of(http)
    a = submit(http, tokens.client, scene_sha, frames="1-6", chunk=2)
    b = submit(http, tokens.client, scene_sha, frames="1-4", chunk=2, priority=5)
    wid = register_worker(http, tokens.worker)
    b0 = claim(http, tokens.worker, wid)  # leased across the upgrade
    assert b0 is not None and (b0["job"], b0["index"]) == (b["id"], 0)
    for job in (a, b):
        to_first_layout(farm, job["id"])

    assert upgrade.upgrade_parts(farm) == 5  # four queued parts and the leased one
    assert upgrade.upgrade_parts(farm) == 0, "a second run (another gateway starting) moves nothing"

    # The leased part, handed back, goes out again first: its job kept its place in line.
    resp = http.post(f"/v1/parts/{b0['id']}/release", headers={**bearer(tokens.worker), **lease(b0)})
    assert resp.get_json() == {"outcome": "requeued"}
    got = [claim(http, tokens.worker, wid) for _ in range(5)]
    assert [(p["job"], p["index"]) for p in got if p] == [
        (b["id"], 0), (b["id"], 1), (a["id"], 0), (a["id"], 1), (a["id"], 2)]
    assert claim(http, tokens.worker, wid) is None


def test_a_farm_without_old_data_is_left_alone(http, tokens, scene_sha):
    farm = farm_of(http)
    job = submit(http, tokens.client, scene_sha, frames="1-4", chunk=2)
    before = farm.redis.zrange(keys.queue(farm.redis.hget(keys.job(job["id"]), "min_version")), 0, -1,
                               withscores=True)
    assert upgrade.upgrade_parts(farm) == 0
    after = farm.redis.zrange(keys.queue(farm.redis.hget(keys.job(job["id"]), "min_version")), 0, -1,
                              withscores=True)
    assert before == after == [(job["id"], float(farm.redis.hget(keys.job(job["id"]), "score")))]


def test_a_part_leased_under_an_old_counter_token_is_handed_back_and_rendered_again(http, tokens, scene_sha):
    """Lease tokens were a bare counter; a lease of that form is requeued at start-up (no attempt
    counted), its worker told to abandon it and its late result refused, so the job loses nothing."""
    farm = farm_of(http)
    job = submit(http, tokens.client, scene_sha, frames="1-4", chunk=2)
    wid = register_worker(http, tokens.worker)
    old, new = claim(http, tokens.worker, wid), claim(http, tokens.worker, wid)
    farm.redis.hset(keys.part(old["id"]), "token", "17")  # as the counter of an earlier Framefarm wrote it
    old["token"] = "17"

    upgrade.run(farm)
    assert upgrade.hand_back_old_leases(farm) == 0, "a second run (another gateway starting) hands back nothing"
    assert (part_fields(http, old["id"])["state"], part_fields(http, old["id"])["attempts"]) == ("queued", "0")
    assert part_fields(http, new["id"])["state"] == "leased", "a lease of today's form is kept"
    assert heartbeat(http, tokens.worker, wid, old, new) == [old["id"]]
    expect_error(put_result(http, tokens.worker, old), 409, "stale_lease")

    again = claim(http, tokens.worker, wid)
    assert again is not None and again["id"] == old["id"]
    for part in (again, new):
        assert put_result(http, tokens.worker, part).status_code == 200
    assert get_job(http, tokens.client, job["id"])["frames"]["done"] == 4
