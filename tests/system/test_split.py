"""The split of a frame request into parts, as the farm really stores it.

`frameset.split` has its own properties (tests/unit/test_frameset.py); these tests check
what the gateway *writes*: the part hashes in Redis, read back raw after the real
submission path (HTTP, file holds, staged batches, commit) against a real redis-server.
`coverage_problems` is the oracle; `test_the_checker_catches_a_wrong_split` corrupts
stored parts and shows that the same oracle fails on each corruption, so a wrong split
(a part starting at the wrong frame, a wrong count) cannot pass these tests unseen.
"""
from __future__ import annotations

import dataclasses

import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from apitools import (bearer, claim, farm_of, get_job, put_result, register_worker, scene_bytes, scene_sha,
                      submit, upload)
from framefarm.common.frameset import MAX_FRAME, FrameRange, split
from framefarm.gateway import cleanup, keys, staging
from framefarm.gateway.app import create_app

__all__ = ["scene_bytes", "scene_sha"]  # fixtures, imported for pytest


def coverage_problems(r, job_id: str, fr: FrameRange, in_order: bool = True) -> list[str]:
    """What is wrong with the job's stored parts, against the request `fr`: empty when the
    parts cover exactly fr's frames, each once (`in_order`: in index order, as in sequential
    order; preview order hands them out in another), and each part is queued."""
    job = r.hgetall(keys.job(job_id))
    n = int(job["parts_total"])
    problems = []
    frames: list[int] = []
    pipe = r.pipeline()
    for i in range(n + 1):
        pipe.hgetall(keys.part(keys.part_id(job_id, i)))
    *stored, after_last = pipe.execute()
    for i, p in enumerate(stored):
        if not p:
            problems.append(f"part {i} is missing")
            continue
        if int(p["index"]) != i or int(p["step"]) != fr.step or int(p["count"]) < 1:
            problems.append(f"part {i} is malformed: {p}")
        start, count, step = int(p["start"]), int(p["count"]), int(p["step"])
        frames += range(start, start + count * step, step)
    if after_last:
        problems.append(f"a part past the last ({n}) is stored")
    if (frames if in_order else sorted(frames)) != fr.frames():
        problems.append(f"the parts hold {len(frames)} frames {frames[:8]}..., not the {fr.count} requested "
                        f"{fr.frames()[:8]}..., each once and in order")
    if int(job["frames_total"]) != fr.count:
        problems.append(f"the job counts {job['frames_total']} frames, not {fr.count}")
    queued = sorted(int(x) for x in r.zrange(keys.job_queue(job_id), 0, -1))
    if queued != list(range(n)):
        problems.append(f"the job's queue holds parts {queued[:8]}..., not 0..{n - 1}")
    return problems


def submit_range(http, token: str, sha: str, fr: FrameRange, chunk: int | None, order: str) -> dict:
    extra = {} if chunk is None else {"chunk": chunk}
    return submit(http, token, sha, frames={"start": fr.start, "end": fr.end}, step=fr.step, order=order, **extra)


@st.composite
def requests(draw) -> tuple[FrameRange, int | None, str]:
    step = draw(st.integers(1, 500))
    count = draw(st.integers(1, 1000))  # the test farm's max_frames
    start = draw(st.integers(0, MAX_FRAME - (count - 1) * step))
    end = min(MAX_FRAME, start + (count - 1) * step + draw(st.integers(0, step - 1)))  # end off the step, too
    return (FrameRange(start, end, step), draw(st.one_of(st.none(), st.integers(1, 1200))),
            draw(st.sampled_from(["preview", "sequential"])))


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(request=requests())
def test_stored_parts_cover_exactly_the_requested_frames_each_once_in_order(http, tokens, scene_sha, request):
    fr, chunk, order = request
    job = submit_range(http, tokens.client, scene_sha, fr, chunk, order)
    assert coverage_problems(farm_of(http).redis, job["id"], fr, in_order=order == "sequential") == []
    assert job["frames"]["total"] == fr.count


CORRUPTIONS = {
    "a part starts one step late": lambda r, k: r.hincrby(k, "start", 3),
    "a part starts one frame early": lambda r, k: r.hincrby(k, "start", -1),
    "a part holds one frame too few": lambda r, k: r.hincrby(k, "count", -1),
    "a part holds one frame too many": lambda r, k: r.hincrby(k, "count", 1),
    "a part has the wrong step": lambda r, k: r.hset(k, "step", 1),
    "a part is lost": lambda r, k: r.delete(k),
}


@pytest.mark.parametrize("corrupt", CORRUPTIONS.values(), ids=CORRUPTIONS.keys())
def test_the_checker_catches_a_wrong_split(http, tokens, scene_sha, corrupt):
    fr = FrameRange(3, 40, 3)
    job = submit_range(http, tokens.client, scene_sha, fr, 4, "sequential")
    r = farm_of(http).redis
    assert coverage_problems(r, job["id"], fr) == []
    key = keys.part(keys.part_id(job["id"], 1))
    saved = r.hgetall(key)
    corrupt(r, key)
    assert coverage_problems(r, job["id"], fr) != []
    r.delete(key)
    r.hset(key, mapping=saved)
    assert coverage_problems(r, job["id"], fr) == []


def test_a_stepped_job_of_several_parts_is_claimed_and_counted_frame_by_frame(http, tokens, scene_sha):
    job = submit(http, tokens.client, scene_sha, frames="3-40", step=3, chunk=4, order="sequential")
    assert job["parts"]["total"] == 4 and job["frames"]["total"] == 13
    wid = register_worker(http, tokens.worker)
    parts = [claim(http, tokens.worker, wid) for _ in range(4)]
    assert claim(http, tokens.worker, wid) is None
    assert [p["frames"] for p in parts] == [[3, 6, 9, 12], [15, 18, 21, 24], [27, 30, 33, 36], [39]]
    assert [p["span"] for p in parts] == [{"index": i, "start": s, "count": c, "step": 3}
                                          for i, (s, c) in enumerate([(3, 4), (15, 4), (27, 4), (39, 1)])]
    listed = get_job(http, tokens.client, job["id"], parts="1")["part_list"]
    assert [(p["start"], p["count"], p["step"], p["state"]) for p in listed] == [
        (3, 4, 3, "leased"), (15, 4, 3, "leased"), (27, 4, 3, "leased"), (39, 1, 3, "leased")]
    for p in reversed(parts):
        assert put_result(http, tokens.worker, p).status_code == 200
    done = get_job(http, tokens.client, job["id"])
    assert done["status"] == "assembling" and done["frames"]["done"] == 13


def test_a_job_being_written_is_invisible_until_its_commit(http, tokens, scene_sha):
    """The parts of a staged job are in Redis, but no claim, listing or lookup sees the job."""
    f = farm_of(http)
    jid = "0123456789ab"
    assert f.scripts.stage_job(args=[jid, "", 60_000]) == ["staged"]
    assert f.scripts.stage_parts(args=[jid, 1, 0, 1, 10])
    wid = register_worker(http, tokens.worker)
    assert claim(http, tokens.worker, wid) is None
    assert http.get(f"/v1/jobs/{jid}", headers=bearer(tokens.admin)).status_code == 404
    assert http.get("/v1/jobs", headers=bearer(tokens.admin)).get_json()["jobs"] == []


def test_a_staging_its_gateway_abandoned_is_discarded_without_a_trace(http, tokens, scene_sha):
    f = farm_of(http)
    before = set(f.redis.keys("*"))
    jid = "abcdefabcdef"
    assert f.scripts.stage_job(args=[jid, "", 60_000]) == ["staged"]
    spans = [(i, 1 + i, 1) for i in range(2500)]
    for first in range(0, 2000, 1000):  # two batches written, then the gateway dies
        assert f.scripts.stage_parts(args=[jid, 1, *[x for s in spans[first:first + 1000] for x in s]])
    assert f.redis.zcard(keys.job_queue(jid)) == 2000
    assert cleanup.sweep(f).discarded == [], "a staging within its deadline is left to its writer"
    f.redis.zadd(keys.STAGING, {jid: 1})  # what the passing of its deadline does, without waiting for it
    assert f.scripts.stage_parts(args=[jid, 1, 2000, 2001, 1]) == 0, "a late writer stops"
    assert cleanup.sweep(f).discarded == [jid]
    assert set(f.redis.keys("*")) == before


def test_a_commit_that_loses_an_idempotency_race_answers_the_winner_and_leaves_nothing(http, tokens, scene_sha,
                                                                                       monkeypatch):
    """Two submissions with one idempotency key, written at the same time: the second to commit
    finds the first's job, answers it, and discards its own parts."""
    f = farm_of(http)
    first = submit(http, tokens.client, scene_sha, frames="1-10", chunk=1)
    idem = keys.idempotency("owner", "k")
    before = set(f.redis.keys("*")) | {idem}
    stage_job = f.scripts.stage_job

    def racing(args):  # the other submission commits while this one writes its parts
        staged = stage_job(args=args)
        f.redis.set(idem, first["id"])
        return staged

    monkeypatch.setattr(f.scripts, "stage_job", racing)
    record = staging.JobRecord("fedcba987654", "owner", idem, 304, 0, "{}", {"name": "second"})
    fr = FrameRange(1, 2500)
    assert staging.write(f, record, 1, split(fr, 1)) == (first["id"], False)
    assert set(f.redis.keys("*")) == before


def test_a_big_job_is_written_in_short_scripts_and_cancelled_in_one(settings, tokens, scene_bytes):
    """20,000 one-frame parts (bench/claims.py measures 100,000): every part stored, nothing left
    staged, and a cancel drops the job's queue at once (the parts still queued read as cancelled)."""
    http = create_app(dataclasses.replace(settings, max_frames=20_000, max_parts=20_000)).test_client()
    sha = upload(http, tokens.client, scene_bytes)
    f = farm_of(http)
    job = submit(http, tokens.client, sha, frames="1-20000", chunk=1)
    assert job["parts"]["total"] == 20_000
    assert f.redis.zcard(keys.job_queue(job["id"])) == 20_000 and f.redis.zcard(keys.STAGING) == 0
    assert coverage_problems(f.redis, job["id"], FrameRange(1, 20_000), in_order=False) == []
    wid = register_worker(http, tokens.worker)
    first = claim(http, tokens.worker, wid)
    assert first["span"] == {"index": 0, "start": 1, "count": 1, "step": 1}
    assert http.post(f"/v1/jobs/{job['id']}/cancel", headers=bearer(tokens.client)).status_code == 200
    assert not f.redis.exists(keys.job_queue(job["id"]))
    assert f.redis.zcard(keys.queue(304)) == 0
    parts = get_job(http, tokens.client, job["id"], parts="1")["part_list"]
    assert {p["state"] for p in parts[1:]} == {"cancelled"} and parts[0]["state"] == "leased"
