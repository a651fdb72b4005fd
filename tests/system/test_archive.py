"""Assembly of the final zip: streamed, stored, exact, resumable, and failing cleanly."""
from __future__ import annotations

import zipfile

import pytest

from farmtools import sha256, zip_bytes
from framefarm.gateway import archive, keys
from framefarm.gateway.app import create_app


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def render_parts(http, tokens, scenes, after_each=lambda: None) -> str:
    """A 3-frame job whose two parts are rendered and uploaded, `after_each` called after each
    result; returns the job's id."""
    blend = scenes("--no-texture").read_bytes()
    sha = sha256(blend)
    assert http.put(f"/v1/files/{sha}", data=blend, headers=auth(tokens.client)).status_code == 201
    job = http.post("/v1/jobs", json={"manifest": {"shot.blend": sha}, "main": "shot.blend", "frames": "9-11",
                                      "chunk": 2}, headers=auth(tokens.client)).get_json()
    wid = http.post("/v1/workers", json={"blender_version": "3.4.1"}, headers=auth(tokens.worker)).get_json()["id"]
    for _ in range(2):
        part = http.post(f"/v1/workers/{wid}/claim", json={"wait": 0}, headers=auth(tokens.worker)).get_json()["part"]
        body = zip_bytes({f"{f:04d}.png": f"frame {f}".encode() for f in part["frames"]})
        res = http.put(f"/v1/parts/{part['id']}/result", data=body,
                       headers={**auth(tokens.worker), "X-Lease-Token": part["token"], "X-Worker-Id": wid})
        assert res.status_code == 200, res.get_json()
        after_each()
    return job["id"]


@pytest.fixture
def done_parts(http, app, tokens, scenes):
    """A 3-frame job whose two parts have been rendered and uploaded; returns (farm, job id)."""
    return app.extensions["framefarm"], render_parts(http, tokens, scenes)


def test_the_last_result_wakes_its_process_assembler(http, app, tokens, scenes):
    """The request that counts a job's last result sets its process's assembly event (app.py
    runs the assembler at once when it is set, not on its next tick); an earlier one does not."""
    due = app.extensions[archive.DUE]
    seen: list[bool] = []
    render_parts(http, tokens, scenes, lambda: seen.append(due.is_set()))
    assert seen == [False, True]


def test_assembly_streams_every_frame_once_stored_and_deletes_the_parts(done_parts):
    farm, job_id = done_parts
    assert farm.redis.hget(keys.job(job_id), "status") == "assembling"
    results = [farm.redis.hget(keys.part(keys.part_id(job_id, i)), "result") for i in range(2)]
    archive.assemble_pending(farm)
    assert farm.redis.hget(keys.job(job_id), "status") == "done"
    with zipfile.ZipFile(farm.storage.local_path(keys.archive(job_id))) as zf:
        assert zf.namelist() == ["0009.png", "0010.png", "0011.png"]
        assert {i.compress_type for i in zf.infolist()} == {zipfile.ZIP_STORED}
        assert zf.read("0010.png") == b"frame 10"
    assert not any(farm.storage.exists(r) for r in results)
    assert farm.redis.zcard(keys.ASSEMBLY) == 0


def test_a_second_gateway_takes_over_when_the_first_dies_holding_the_lock(done_parts, settings):
    farm, job_id = done_parts
    other = create_app(settings).extensions["framefarm"]
    # The first gateway took the lock and died; the lock runs out by itself (a minute: long
    # enough that a loaded machine cannot let it lapse before the second gateway looks).
    farm.redis.set(keys.assembly_lock(job_id), "dead-gateway", px=60_000)
    assert archive.assemble(other, job_id) is False
    assert farm.redis.hget(keys.job(job_id), "status") == "assembling"
    deadline_ms = farm.redis.pttl(keys.assembly_lock(job_id))
    assert 0 < deadline_ms <= 60_000
    farm.redis.delete(keys.assembly_lock(job_id))  # what its expiry does, without waiting for it
    archive.assemble_pending(other)
    assert farm.redis.hget(keys.job(job_id), "status") == "done"


def test_an_assembly_that_cannot_succeed_fails_the_job_with_the_reason(done_parts):
    farm, job_id = done_parts
    lost = farm.redis.hget(keys.part(keys.part_id(job_id, 1)), "result")
    farm.storage.delete(lost)
    for _ in range(archive.MAX_ASSEMBLY_FAILURES):
        farm.redis.delete(keys.assembly_lock(job_id))
        archive.assemble_pending(farm)
    job = farm.redis.hgetall(keys.job(job_id))
    assert job["status"] == "failed"
    assert "assembling the final zip failed" in job["error"]
    assert not farm.storage.exists(keys.archive(job_id))
    assert farm.redis.zcard(keys.ASSEMBLY) == 0
