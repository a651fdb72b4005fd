"""Limits on everything a client or a worker sends (issue 9, items 6, 7 and the gateway half of 12).

Each attack worked against a live farm: a 300-character file name accepted and then failing
on every worker, a 408 KB result unpacking to a 419 MB archive, 100,000 one-frame parts
filling Redis, priority 1000 for anyone, records kept forever. Here each is refused with its
own 4xx naming the limit's setting, and a refusal leaves Redis and storage as they were.
These run on the real redis-server with the gateway app; the long-poll caps need gunicorn
and are in test_attack_longpolls.py.
"""
from __future__ import annotations

import dataclasses
import io
import zipfile

import pytest

from apitools import (bearer, claim, expect_error, farm_of, frames_zip, get_job, job_body, put_result,
                      register_worker, scene_bytes, scene_sha, submit, unchanged, upload)  # noqa: F401
from farmtools import wait_for
from framefarm.gateway import archive, cleanup, keys
from framefarm.gateway.app import create_app


def app_with(settings, **limits):
    return create_app(dataclasses.replace(settings, **limits)).test_client()


def post_job(http, token: str, body: dict):
    return http.post("/v1/jobs", json=body, headers=bearer(token))


# --- 12: manifest names a worker cannot create ------------------------------------------------

@pytest.mark.parametrize("name", [
    "t" * 296 + ".png",                       # the reported attack: a 300-character name
    "textures/" + "é" * 126 + ".png",         # 256 bytes in UTF-8, though 130 characters
    "/".join(["d" * 250] * 5),                # every name fine, the path past 1024 bytes
    "tex\x01.png",                            # a control character
    "../outside.png", "/etc/passwd",          # already refused by the spec; still refused
], ids=["300-chars", "256-utf8-bytes", "long-path", "control-char", "dotdot", "absolute"])
def test_a_manifest_name_no_worker_can_create_is_refused_at_submit(http, tokens, scene_sha, name):
    with unchanged(http):
        err = expect_error(post_job(http, tokens.client, job_body(scene_sha, manifest={
            "scene.blend": scene_sha, name: scene_sha})), 400, "bad_manifest")
    assert name[:20] in err["message"] or repr(name)[1:20] in err["message"], err


def test_names_at_the_limits_are_accepted(http, tokens, scene_sha):
    name = "t" * 251 + ".png"
    job = submit(http, tokens.client, scene_sha, manifest={"scene.blend": scene_sha, name: scene_sha})
    assert job["status"] == "queued"


# --- 6: a zip bomb as a part's result ---------------------------------------------------------

def bomb(frame_names: list[str], unpacked: int) -> bytes:
    """A real zip bomb: each frame entry `unpacked` bytes of zeros, deflated to about a thousandth."""
    buf = io.BytesIO()
    block = bytes(1024 * 1024)
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for name in frame_names:
            with zf.open(name, "w", force_zip64=True) as out:
                for _ in range(unpacked // len(block)):
                    out.write(block)
    return buf.getvalue()


def leased_part(http, tokens, scene_sha, **fields):
    job = submit(http, tokens.client, scene_sha, **fields)
    wid = register_worker(http, tokens.worker)
    part = claim(http, tokens.worker, wid)
    assert part is not None
    return job, part


def stored_parts(http, job) -> list:
    return [p for p in (farm_of(http).storage.root / keys.job_parts(job["id"])).rglob("*") if p.is_file()]


def assert_refused_and_attempt_failed(http, job, part, resp):
    err = expect_error(resp, 413, "result_too_large")
    assert "nothing was stored" in err["message"] and "attempt failed" in err["message"], err
    assert stored_parts(http, job) == [], "a refused result left objects in storage"
    fields = farm_of(http).redis.hgetall(keys.part(part["id"]))
    assert fields["state"] == "queued" and fields["attempts"] == "1", fields
    assert "refused" in fields.get("error", ""), fields
    return err


def test_a_zip_bomb_result_is_refused_by_its_ratio(http, tokens, scene_sha):
    """The reported attack's shape: a few hundred KB that unpack to hundreds of MB."""
    job, part = leased_part(http, tokens, scene_sha, frames="1-1", chunk=1)
    data = bomb([f"{f:04d}.png" for f in part["frames"]], 200 * 1024 * 1024)
    assert len(data) < 1024 * 1024  # it travels small
    err = assert_refused_and_attempt_failed(http, job, part, put_result(http, tokens.worker, part, data))
    assert "FRAMEFARM_MAX_RESULT_RATIO" in err["message"], err


def test_a_result_heavier_than_its_frames_can_weigh_is_refused(settings, tokens, scene_bytes):
    """Stored (not compressed) frames, so no ratio gives them away: the per-frame ceiling does."""
    http = app_with(settings, max_frame_bytes=1024 * 1024)
    sha = upload(http, tokens.client, scene_bytes)
    job, part = leased_part(http, tokens, sha, frames="1-2", chunk=2)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for f in part["frames"]:
            zf.writestr(f"{f:04d}.png", bytes(1024 * 1024 + 1))
    err = assert_refused_and_attempt_failed(http, job, part, put_result(http, tokens.worker, part, buf.getvalue()))
    assert "FRAMEFARM_MAX_FRAME_BYTES" in err["message"], err


def test_a_zip_that_lies_about_its_sizes_is_refused(http, tokens, scene_sha):
    """Declared sizes are never trusted: an entry declaring 10 bytes that inflates to 20 MB is
    refused, not read past its declaration."""
    job, part = leased_part(http, tokens, scene_sha, frames="1-1", chunk=1)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("0001.png", bytes(20 * 1024 * 1024))
    data = bytearray(buf.getvalue())
    central = data.rfind(b"PK\x01\x02")  # the entry's central directory header: its size at +24
    data[central + 24:central + 28] = (10).to_bytes(4, "little")
    assert zipfile.ZipFile(io.BytesIO(bytes(data))).infolist()[0].file_size == 10
    expect_error(put_result(http, tokens.worker, part, bytes(data)), 400, "bad_result")
    assert stored_parts(http, job) == []


def test_real_frames_still_pass(http, tokens, scene_sha):
    job, part = leased_part(http, tokens, scene_sha, frames="1-2", chunk=2)
    resp = put_result(http, tokens.worker, part, frames_zip(part["frames"]))
    assert resp.status_code == 200, resp.get_json()


# --- 7: quotas --------------------------------------------------------------------------------

def test_more_frames_than_a_job_may_have_is_413(http, tokens, scene_sha):
    with unchanged(http):
        err = expect_error(post_job(http, tokens.client, job_body(scene_sha, frames="1-1001")), 413,
                           "too_many_frames")
    assert "FRAMEFARM_MAX_FRAMES" in err["message"] and err["limit"] == 1000


def test_more_parts_than_a_job_may_have_is_413_and_redis_is_unchanged(settings, tokens, scene_bytes):
    http = app_with(settings, max_parts=100)
    sha = upload(http, tokens.client, scene_bytes)
    r = farm_of(http).redis
    size = r.dbsize()
    with unchanged(http):
        err = expect_error(post_job(http, tokens.client, job_body(sha, frames="1-1000", chunk=1)), 413,
                           "too_many_parts")
    assert "FRAMEFARM_MAX_PARTS" in err["message"] and "chunk of at least 10" in err["message"], err
    assert r.dbsize() == size


def test_a_chunk_the_farm_picks_stays_within_the_parts_limit(settings, tokens, scene_bytes):
    """Ten live workers would get three parts each (30) unless the limit raises the chunk (parts
    by count; parts sized by time keep to the limit too: test_part_sizing.py)."""
    http = app_with(settings, max_parts=7, target_part_seconds=0)
    for n in range(10):
        register_worker(http, tokens.worker, name=f"w{n}")
    sha = upload(http, tokens.client, scene_bytes)
    job = submit(http, tokens.client, sha, frames="1-1000", chunk=None)
    assert job["parts"]["total"] == 7 and job["parts"]["chunk"] == 143


def test_a_client_may_not_jump_the_queue_but_an_admin_may(http, tokens, scene_sha):
    for priority in (101, -101, 1000):
        with unchanged(http):
            err = expect_error(post_job(http, tokens.client, job_body(scene_sha, priority=priority)), 422,
                               "priority_not_allowed")
        assert "FRAMEFARM_CLIENT_PRIORITY_MIN/MAX" in err["message"], err
    assert submit(http, tokens.client, scene_sha, priority=100)["priority"] == 100
    assert submit(http, tokens.admin, scene_sha, priority=1000)["priority"] == 1000


def test_active_jobs_per_owner_are_limited(settings, tokens, scene_bytes):
    http = app_with(settings, max_active_jobs=2)
    sha = upload(http, tokens.client, scene_bytes)
    first = submit(http, tokens.client, sha)
    submit(http, tokens.client, sha)
    with unchanged(http):
        resp = post_job(http, tokens.client, job_body(sha))
        err = expect_error(resp, 429, "too_many_active_jobs")
    assert "Retry-After" not in resp.headers  # waiting alone does not end a job
    assert "FRAMEFARM_MAX_ACTIVE_JOBS" in err["message"], err
    submit(http, tokens.client2, upload(http, tokens.client2, scene_bytes))  # another owner is not held back
    assert http.post(f"/v1/jobs/{first['id']}/cancel", headers=bearer(tokens.client)).status_code == 200
    submit(http, tokens.client, sha)  # an ended job frees its slot


def test_requests_per_token_are_limited(settings, tokens):
    http = app_with(settings, client_requests_per_min=5)
    for _ in range(5):
        assert http.get("/v1/jobs", headers=bearer(tokens.client)).status_code == 200
    resp = http.get("/v1/jobs", headers=bearer(tokens.client))
    err = expect_error(resp, 429, "too_many_requests")
    assert "FRAMEFARM_CLIENT_REQUESTS_PER_MIN" in err["message"], err
    assert 1 <= int(resp.headers["Retry-After"]) <= 60
    assert http.get("/v1/jobs", headers=bearer(tokens.client2)).status_code == 200  # per token


def test_paging_walks_every_part_exactly_once(settings, tokens, scene_bytes):
    http = app_with(settings, part_page_size=7)
    sha = upload(http, tokens.client, scene_bytes)
    job = submit(http, tokens.client, sha, frames="1-50", chunk=1)
    seen: list[int] = []
    start: int | None = 0
    pages = 0
    while start is not None:
        page = get_job(http, tokens.client, job["id"], parts="1", parts_from=str(start))
        assert len(page["part_list"]) <= 7
        seen += [p["index"] for p in page["part_list"]]
        start, pages = page["parts_next"], pages + 1
    assert seen == list(range(50)) and pages == 8
    past = get_job(http, tokens.client, job["id"], parts="1", parts_from="50")
    assert past["part_list"] == [] and past["parts_next"] is None
    expect_error(http.get(f"/v1/jobs/{job['id']}?parts=1&parts_from=-1", headers=bearer(tokens.client)), 400)


def job_keys(r, job_id: str) -> list[str]:
    return [k for k in r.keys("*") if job_id in k] + [
        index for index in (keys.ALL_JOBS, keys.ARCHIVES, keys.RECORDS_DUE) if r.zscore(index, job_id) is not None]


def test_records_are_removed_after_retention(settings, tokens, scene_bytes):
    """A done job is listed as expired once its archive is gone, then its records go; a
    cancelled job's too. Short retentions, and the clean-up waited for, never slept on."""
    http = app_with(settings, archive_retention_s=1, record_retention_s=3)
    farm = farm_of(http)
    r = farm.redis
    sha = upload(http, tokens.client, scene_bytes)
    done = submit(http, tokens.client, sha, frames="1-4", chunk=2)
    wid = register_worker(http, tokens.worker)
    while (part := claim(http, tokens.worker, wid)) is not None:
        assert put_result(http, tokens.worker, part).status_code == 200
    archive.assemble_pending(farm)
    assert get_job(http, tokens.client, done["id"])["status"] == "done"
    cancelled = submit(http, tokens.client, sha)
    assert http.post(f"/v1/jobs/{cancelled['id']}/cancel", headers=bearer(tokens.client)).status_code == 200
    kept = submit(http, tokens.client2, upload(http, tokens.client2, scene_bytes))  # still running

    def listed() -> dict[str, str]:
        return {j["id"]: j["status"] for j in http.get("/v1/jobs", headers=bearer(tokens.client)).get_json()["jobs"]}

    wait_for(lambda: cleanup.sweep(farm) and listed().get(done["id"]) == "expired", 30, "the archive to expire")
    assert job_keys(r, done["id"]) and not farm.storage.exists(keys.archive(done["id"]))
    wait_for(lambda: cleanup.sweep(farm) and not job_keys(r, done["id"]) and not job_keys(r, cancelled["id"]),
             30, "the ended jobs' records to be removed")
    assert listed() == {}
    expect_error(http.get(f"/v1/jobs/{done['id']}", headers=bearer(tokens.client)), 404)
    assert not r.keys(keys.part(keys.part_id(done["id"], "*")))
    assert get_job(http, tokens.client2, kept["id"])["status"] == "queued"  # a running job keeps its records
    assert r.exists(keys.part(keys.part_id(kept["id"], 0)))
