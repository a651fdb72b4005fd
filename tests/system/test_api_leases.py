"""The gateway's HTTP contract for workers: leases fence every part, and nothing counts twice.

A part is changed only by the worker holding its current lease token; anything else
(a stale or missing token, a result that is not exactly the part's frames) is refused
and leaves the part leased, uncounted, with nothing stored. Expiry, retries, blocking
and version gating are driven through the same API, with Redis's clock doing the timing.
"""
from __future__ import annotations

import dataclasses
import io
import json
import warnings
import zipfile
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from apitools import (bearer, claim, expect_error, fail_part, farm_of, frames_zip, get_job, heartbeat, lease,
                      part_fields, put_result, register_worker, scene_bytes, scene_sha, submit, unchanged, upload)
from farmtools import wait_for, zip_bytes
from framefarm.gateway import scheduling
from framefarm.gateway.app import create_app

__all__ = ["scene_bytes", "scene_sha"]  # fixtures, imported for pytest


def app_with(settings, **changes):
    """A second gateway app on the same Redis and storage, with other settings."""
    return create_app(dataclasses.replace(settings, **changes)).test_client()


@pytest.fixture
def leased(http, tokens, scene_sha):
    """A job of two parts (frames 1-4, two a part), its first part leased to a worker."""
    job = submit(http, tokens.client, scene_sha)
    wid = register_worker(http, tokens.worker)
    return SimpleNamespace(job=job, wid=wid, part=claim(http, tokens.worker, wid))


def raw_zip(entries: list[tuple[str, bytes]], compression: int = zipfile.ZIP_STORED) -> bytes:
    """A zip exactly as listed (duplicate names included, which a dict cannot hold)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "Duplicate name" is the point of some tests
        for name, data in entries:
            zf.writestr(name, data)
    return buf.getvalue()


def corrupt(compression: int):
    """The part's frames, compressed, with bytes of the first frame's data flipped."""
    def make(frames: list[int]) -> bytes:
        data = raw_zip([(f"{f:04d}.png", bytes(range(256)) * 64) for f in frames], compression)
        middle = data.index(b".png") + 20
        return data[:middle] + bytes(b ^ 0xFF for b in data[middle:middle + 64]) + data[middle + 64:]
    return make


def with_header_field(local_offset: int, central_offset: int, value: int):
    """The part's frames in a zip whose local and central headers say `value` at these offsets."""
    def make(frames: list[int]) -> bytes:
        data = bytearray(frames_zip(frames))
        for signature, offset in ((b"PK\x03\x04", local_offset), (b"PK\x01\x02", central_offset)):
            at = data.find(signature)
            while at >= 0:
                data[at + offset:at + offset + 2] = value.to_bytes(2, "little")
                at = data.find(signature, at + 4)
        return bytes(data)
    return make


BAD_RESULTS = {
    "not a zip": lambda frames: b"PK\x03\x04 but nothing like a zip after that",
    "truncated zip": lambda frames: frames_zip(frames)[:-30],
    "wrong frame name": lambda frames: zip_bytes({"frame_0001.png": b"x", "0002.png": b"x"}),
    "missing frame": lambda frames: frames_zip(frames[:-1]),
    "extra frame": lambda frames: frames_zip(frames + [frames[-1] + 1]),
    "duplicate name": lambda frames: raw_zip([(f"{f:04d}.png", b"x") for f in frames + frames[:1]]),
    "same frame twice": lambda frames: raw_zip([(f"{f:04d}.png", b"x") for f in frames]
                                               + [(f"{frames[0]:04d}.jpg", b"x")]),
    "directory entry": lambda frames: raw_zip([(f"{f:04d}.png", b"x") for f in frames] + [("renders/", b"")]),
    "corrupt deflate data": corrupt(zipfile.ZIP_DEFLATED),
    "corrupt bzip2 data": corrupt(zipfile.ZIP_BZIP2),
    "corrupt lzma data": corrupt(zipfile.ZIP_LZMA),
    "unknown compression": with_header_field(8, 10, 99),
    "encrypted entries": with_header_field(6, 8, 0x1),
}


@pytest.mark.parametrize("make", BAD_RESULTS.values(), ids=BAD_RESULTS.keys())
def test_a_result_that_is_not_exactly_the_parts_frames_is_refused(http, tokens, leased, make):
    with unchanged(http):
        expect_error(put_result(http, tokens.worker, leased.part, make(leased.part["frames"])), 400, "bad_result")
    assert put_result(http, tokens.worker, leased.part).status_code == 200, "the part should still be leased"


@pytest.mark.parametrize("token", ["999999", "", None], ids=["stale", "empty", "absent"])
def test_a_result_without_the_current_lease_token_is_refused(http, tokens, leased, token):
    with unchanged(http):
        if token is None:
            resp = http.put(f"/v1/parts/{leased.part['id']}/result", data=frames_zip(leased.part["frames"]),
                            headers={**bearer(tokens.worker), "X-Worker-Id": leased.wid})
        else:
            resp = put_result(http, tokens.worker, leased.part, lease_token=token)
        expect_error(resp, 409, "stale_lease")
    assert put_result(http, tokens.worker, leased.part).get_json() == {"ok": True, "job_status": "running"}
    assert get_job(http, tokens.client, leased.job["id"])["frames"]["done"] == 2


def test_failure_and_release_need_the_current_lease(http, tokens, leased):
    pid = leased.part["id"]
    with unchanged(http):
        for action in ("failure", "release"):
            resp = http.post(f"/v1/parts/{pid}/{action}", json={"message": "m"},
                             headers={**bearer(tokens.worker), **lease(leased.part, "999999")})
            expect_error(resp, 409, "stale_lease")
            expect_error(http.post(f"/v1/parts/{leased.job['id']}:9/{action}", json={},
                                   headers={**bearer(tokens.worker), **lease(leased.part)}), 404)
    resp = http.post(f"/v1/parts/{pid}/release", headers={**bearer(tokens.worker), **lease(leased.part)})
    assert resp.get_json() == {"outcome": "requeued"}
    assert part_fields(http, pid)["attempts"] == "0", "a release is not a failed attempt"


def test_a_release_gives_its_reason_to_the_jobs_parts_without_counting_an_attempt(http, tokens, leased):
    pid, headers = leased.part["id"], {**bearer(tokens.worker), **lease(leased.part)}
    with unchanged(http):
        expect_error(http.post(f"/v1/parts/{pid}/release", json={"reason": 7}, headers=headers), 400)
    resp = http.post(f"/v1/parts/{pid}/release", json={"reason": "disk full " + "x" * 9000}, headers=headers)
    assert resp.get_json() == {"outcome": "requeued"}
    shown = get_job(http, tokens.client, leased.job["id"], parts="1")["part_list"][0]
    assert shown["state"] == "queued" and shown["attempts"] == 0, shown
    assert shown["error"].startswith(f"released by worker {leased.wid}: disk full xxx"), shown["error"][:80]
    assert len(shown["error"]) < 4100, "the reason is cut to its limit"


def test_heartbeat_renews_leases_and_abandons_parts_of_a_cancelled_job(http, tokens, leased):
    pid, before = leased.part["id"], int(part_fields(http, leased.part["id"])["deadline"])
    assert heartbeat(http, tokens.worker, leased.wid, leased.part) == []
    assert int(part_fields(http, pid)["deadline"]) >= before
    assert http.post(f"/v1/jobs/{leased.job['id']}/cancel", headers=bearer(tokens.client)).status_code == 200
    assert heartbeat(http, tokens.worker, leased.wid, leased.part) == [pid]
    with unchanged(http):
        expect_error(put_result(http, tokens.worker, leased.part), 409, "job_ended")


@pytest.mark.parametrize("reaper", ["background reaper", "next claim"])
def test_an_expired_lease_requeues_the_part_and_refuses_the_late_result(settings, tokens, scene_sha, reaper):
    http = app_with(settings, lease_s=0.2)
    job = submit(http, tokens.client, scene_sha, frames="1-2")
    late = register_worker(http, tokens.worker, name="late")
    first = claim(http, tokens.worker, late)
    other = register_worker(http, tokens.worker, name="other")
    if reaper == "background reaper":
        wait_for(lambda: scheduling.reap(farm_of(http)) or part_fields(http, first["id"])["state"] == "queued",
                 10, "the reaper to requeue the part", interval=0.02)
        assert heartbeat(http, tokens.worker, late, first) == [first["id"]]
    second = wait_for(lambda: claim(http, tokens.worker, other), 10, "the part to be claimable again", interval=0.02)
    assert (second["id"], second["attempts"]) == (first["id"], 1) and second["token"] != first["token"]
    assert "lease expired" in part_fields(http, first["id"])["error"]
    with unchanged(http):
        expect_error(put_result(http, tokens.worker, first), 409, "stale_lease")
    assert put_result(http, tokens.worker, second).get_json() == {"ok": True, "job_status": "assembling"}
    assert get_job(http, tokens.client, job["id"])["frames"]["done"] == 2


def test_a_part_failing_max_attempts_times_fails_the_job_with_the_last_error(http, tokens, scene_sha, settings):
    job = submit(http, tokens.client, scene_sha, frames="1-2")
    workers = [register_worker(http, tokens.worker, name=n) for n in ("a", "a", "b")]
    outcomes = [fail_part(http, tokens.worker, claim(http, tokens.worker, wid), f"boom {i}").get_json()["outcome"]
                for i, wid in enumerate(workers, 1)]
    assert settings.max_attempts == 3 and outcomes == ["requeued", "requeued", "failed"]
    failed = get_job(http, tokens.client, job["id"], parts="1")
    assert failed["status"] == "failed" and "failed 3 times" in failed["error"] and "boom 3" in failed["error"]
    assert failed["part_list"][0] | {"error": None} == {"index": 0, "start": 1, "count": 2, "step": 1, "state": "failed",
                                                        "attempts": 3, "error": None}
    assert claim(http, tokens.worker, workers[2]) is None


def test_a_worker_that_failed_a_job_twice_is_kept_away_from_it(http, tokens, scene_sha):
    job = submit(http, tokens.client, scene_sha, frames="1-2")
    unlucky = register_worker(http, tokens.worker, name="unlucky")
    for i in (1, 2):
        assert fail_part(http, tokens.worker, claim(http, tokens.worker, unlucky), f"crash {i}").status_code == 200
    assert claim(http, tokens.worker, unlucky) is None
    assert "failed it twice" in get_job(http, tokens.client, job["id"])["waiting_reason"]
    assert claim(http, tokens.worker, register_worker(http, tokens.worker, name="fresh"))["job"] == job["id"]
    later = submit(http, tokens.client, scene_sha, frames="1-2")
    assert claim(http, tokens.worker, unlucky)["job"] == later["id"], "blocked from that job only"


def test_a_deterministic_failure_fails_the_job_at_once(http, tokens, leased):
    resp = fail_part(http, tokens.worker, leased.part, "Error: no camera found in scene", deterministic=True)
    assert resp.get_json() == {"outcome": "failed"}
    job = get_job(http, tokens.client, leased.job["id"], parts="1")
    assert (job["status"], job["error"]) == ("failed", "Error: no camera found in scene")
    assert [p["state"] for p in job["part_list"]] == ["failed", "failed"]
    assert claim(http, tokens.worker, leased.wid) is None


def test_a_scene_saved_by_a_newer_blender_goes_only_to_workers_that_can_open_it(http, tokens, scene_bytes):
    assert scene_bytes[:12] == b"BLENDER-v304"
    job = submit(http, tokens.client, upload(http, tokens.client, b"BLENDER-v405" + scene_bytes[12:]))
    assert job["blender_version"] == "4.5"
    old = register_worker(http, tokens.worker, "3.4.1", name="old")
    assert claim(http, tokens.worker, old) is None
    reason = get_job(http, tokens.client, job["id"])["waiting_reason"]
    assert "4.5" in reason and "3.4" in reason
    new = register_worker(http, tokens.worker, "4.5.0", name="new")
    assert claim(http, tokens.worker, old) is None
    part = claim(http, tokens.worker, new)
    assert (part["job"], part["blender_version"]) == (job["id"], 405)
    assert get_job(http, tokens.client, job["id"])["waiting_reason"] is None


@pytest.mark.parametrize("version", ["².1", "1" * 5000 + ".1", "3", "3.4x", "0.5", "99999.1", 99, 10000, True, None])
def test_a_worker_with_an_unreadable_blender_version_is_refused(http, tokens, version):
    with unchanged(http):
        expect_error(http.post("/v1/workers", json={"blender_version": version}, headers=bearer(tokens.worker)),
                     400, "bad_version")


@pytest.mark.parametrize("body", ['{"wait": NaN}', '{"wait": -1}', '{"wait": "5"}', "[]"])
def test_a_claim_with_a_bad_wait_is_refused_at_once(http, tokens, body):
    wid = register_worker(http, tokens.worker)
    resp = http.post(f"/v1/workers/{wid}/claim", data=body, content_type="application/json",
                     headers=bearer(tokens.worker))
    expect_error(resp, 400)


FAILURE_BODIES = st.fixed_dictionaries({}, optional={
    "message": st.text(max_size=30) | st.integers() | st.none(), "log_tail": st.text(max_size=30) | st.lists(st.text()),
    "deterministic": st.booleans() | st.integers(0, 1) | st.text(max_size=3)}) | st.lists(st.integers(), max_size=2)


def test_random_failure_reports_never_cause_a_server_error(settings, tokens, scene_sha):
    """Each report goes to a real lease, so the body is what decides the answer."""
    http = app_with(settings, max_attempts=10**6, block_after=10**6)
    wid = register_worker(http, tokens.worker)
    held: list[dict] = []

    def lease_one() -> dict:
        part = claim(http, tokens.worker, wid)
        if part is None:  # a deterministic failure ended the last job: start another
            submit(http, tokens.client, scene_sha, frames="1-2")
            part = claim(http, tokens.worker, wid)
        return part

    @hsettings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(FAILURE_BODIES)
    def report(body):
        if not held:
            held.append(lease_one())
        resp = http.post(f"/v1/parts/{held[0]['id']}/failure", data=json.dumps(body),
                         content_type="application/json", headers={**bearer(tokens.worker), **lease(held[0])})
        assert resp.status_code in (200, 400), (body, resp.get_data(as_text=True))
        if resp.status_code == 200:
            held.clear()
        else:
            expect_error(resp, 400)

    report()
