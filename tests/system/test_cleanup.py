"""Clean-up: part results, scene files and final archives are deleted once nothing needs them,
and never while something might. Driven through the HTTP API as clients and workers use it,
on the local folder and on Cloud Storage (the emulator)."""
from __future__ import annotations

import dataclasses
import os
import urllib.error
import urllib.request

import pytest

from apitools import (bearer, claim, expect_error, farm_of, get_job, job_body, put_result, register_worker,
                      scene_bytes, submit, upload)
from framefarm.gateway import archive, cleanup, keys
from framefarm.gateway.app import create_app
from framefarm.gateway.storage import LocalStorage

__all__ = ["scene_bytes"]  # fixture, imported for pytest


@pytest.fixture(params=["local", "gcs"])
def http(request, settings):
    """A gateway app with no grace period, so a sweep deletes whatever nothing holds."""
    changes = {"files_grace_s": 0}
    if request.param == "gcs":
        changes["storage"] = request.getfixturevalue("gcs").storage_url()
    return create_app(dataclasses.replace(settings, **changes)).test_client()


@pytest.fixture
def wid(http, tokens) -> str:
    return register_worker(http, tokens.worker)


def stored(http, prefix: str) -> set[str]:
    return {o.key for o in farm_of(http).storage.list_prefix(prefix)}


def files(*shas: str) -> set[str]:
    return {f"files/{sha}" for sha in shas}


def render(http, tokens, wid: str, job: dict) -> None:
    """Play the worker for every part of `job`, then let the gateway assemble it."""
    for _ in range(job["parts"]["total"]):
        part = claim(http, tokens.worker, wid)
        assert part is not None and part["job"] == job["id"], part
        assert put_result(http, tokens.worker, part).status_code == 200
    assert stored(http, f"parts/{job['id']}"), "the results should be stored until assembled"
    archive.assemble_pending(farm_of(http))
    assert get_job(http, tokens.client, job["id"])["status"] == "done"


def sweep(http) -> cleanup.Report:
    return cleanup.sweep(farm_of(http))


def test_a_scene_shared_by_two_jobs_survives_the_first_jobs_cleanup_not_the_seconds(http, tokens, wid,
                                                                                      scene_bytes):
    scene = upload(http, tokens.client, scene_bytes)
    tex_a, tex_b = upload(http, tokens.client, b"texture a"), upload(http, tokens.client, b"texture b")
    first = submit(http, tokens.client, scene, manifest={"scene.blend": scene, "a.png": tex_a}, chunk=2)
    second = submit(http, tokens.client, scene, manifest={"scene.blend": scene, "b.png": tex_b}, priority=-1)
    assert sweep(http).deleted_files == [], "nothing is deleted while both jobs run"

    render(http, tokens, wid, first)
    assert stored(http, "parts") == set(), "assembly deletes the part results"
    report = sweep(http)
    assert report.released == [first["id"]]
    assert stored(http, "files") == files(scene, tex_b), "the shared scene is still needed by the second job"
    assert stored(http, "archives") == {keys.archive(first["id"])}

    render(http, tokens, wid, second)
    sweep(http)
    assert stored(http, "files") == set()
    assert stored(http, "parts") == set()
    assert farm_of(http).redis.hlen(keys.FILE_REFS) == 0


def test_a_cancelled_job_leaves_neither_parts_nor_files(http, tokens, wid, scene_bytes):
    scene = upload(http, tokens.client, scene_bytes)
    job = submit(http, tokens.client, scene)  # two parts
    part = claim(http, tokens.worker, wid)
    assert put_result(http, tokens.worker, part).status_code == 200
    assert http.post(f"/v1/jobs/{job['id']}/cancel", headers=bearer(tokens.client)).status_code == 200
    assert len(stored(http, f"parts/{job['id']}")) == 1
    sweep(http)
    assert stored(http, "parts") == set() and stored(http, "files") == set()


def test_an_archive_past_retention_is_deleted_and_its_links_answer_410(http, tokens, wid, scene_bytes):
    scene = upload(http, tokens.client, scene_bytes)
    job = submit(http, tokens.client, scene)
    render(http, tokens, wid, job)
    link = get_job(http, tokens.client, job["id"])["download_url"]
    sweep(http)
    assert stored(http, "archives") == {keys.archive(job["id"])}, "kept within the retention period"

    farm_of(http).settings = dataclasses.replace(farm_of(http).settings, archive_retention_s=0)
    assert sweep(http).expired == [job["id"]]
    assert stored(http, "archives") == set()
    view = get_job(http, tokens.client, job["id"])
    assert view["status"] == "expired" and "download_url" not in view
    err = expect_error(http.get(f"/v1/jobs/{job['id']}/archive", headers=bearer(tokens.client)), 410, "expired")
    assert "for 0 seconds" in err["message"] and "Submit the scene again" in err["message"]
    if isinstance(farm_of(http).storage, LocalStorage):  # the link is the gateway's own
        expect_error(http.get(link.removeprefix("http://localhost")), 410, "expired")
    else:  # a signed storage URL: the object behind it is gone
        assert link.startswith(os.environ["STORAGE_EMULATOR_HOST"])
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(link, timeout=10)
        assert e.value.code == 404
    assert sweep(http).expired == []


def test_files_are_kept_for_the_grace_period(http, tokens, wid, scene_bytes):
    """A file uploaded for a submission not made yet, or just let go by its job, stays."""
    f = farm_of(http)
    f.settings = dataclasses.replace(f.settings, files_grace_s=3600)
    scene = upload(http, tokens.client, scene_bytes)
    loose = upload(http, tokens.client, b"uploaded, not yet in a job")
    job = submit(http, tokens.client, scene)
    render(http, tokens, wid, job)
    assert sweep(http).released == [job["id"]]
    assert stored(http, "files") == files(scene, loose)

    f.settings = dataclasses.replace(f.settings, files_grace_s=0)
    assert sorted(sweep(http).deleted_files) == sorted([scene, loose])


def test_a_file_being_deleted_cannot_be_held_and_a_held_file_cannot_be_deleted(http, tokens, scene_bytes):
    """The two sides of the race between a sweep and a submission, each one atomic step."""
    f = farm_of(http)
    scene = upload(http, tokens.client, scene_bytes)
    assert f.scripts.doom_file(args=[scene, 0, 60]) == 1  # a sweep has claimed it...
    resp = http.post("/v1/jobs", json=job_body(scene), headers=bearer(tokens.client))
    err = expect_error(resp, 400, "missing_files")  # ...so a submission cannot use it
    assert err["missing"] == [scene]
    assert not f.redis.exists(keys.FILE_HOLDERS)
    f.redis.delete(keys.file_deleting(scene))  # the sweep dies before deleting: the file is usable again

    job = submit(http, tokens.client, scene)
    assert f.scripts.doom_file(args=[scene, 0, 60]) == 0, "a held file is never claimed"
    assert sweep(http).deleted_files == [] and stored(http, "files") == files(scene)
    assert job["status"] == "queued"


def test_a_hold_whose_job_was_never_recorded_is_dropped_after_the_grace(http, tokens):
    f = farm_of(http)
    sha = upload(http, tokens.client, b"orphan")
    assert f.scripts.hold_files(args=["0123456789ab", sha]) == []  # its gateway died here
    f.settings = dataclasses.replace(f.settings, files_grace_s=3600)
    assert sweep(http).released == []
    f.settings = dataclasses.replace(f.settings, files_grace_s=0)
    assert sweep(http).released == ["0123456789ab"]
    assert stored(http, "files") == set()


def test_one_process_sweeps_per_period(http):
    f = farm_of(http)
    assert cleanup.step(f) is not None
    assert cleanup.step(f) is None, "a second process in the same period finds the lock taken"


def test_a_direct_upload_never_committed_is_swept_and_a_fresh_one_is_not(http, settings):
    """`files/incoming/` holds uploads sent straight to storage and not committed (yet)."""
    farm = farm_of(http)
    with farm.storage.writer("files/incoming/" + "a" * 64 + "-0123456789abcdef") as out:
        out.write(b"abandoned")
    sweep(http)  # no grace here: an upload nobody committed goes
    assert stored(http, "files/incoming") == set()

    patient = create_app(dataclasses.replace(settings, storage=farm.settings.storage, files_grace_s=3600))
    with farm.storage.writer("files/incoming/" + "b" * 64 + "-0123456789abcdef") as out:
        out.write(b"being committed")
    cleanup.sweep(patient.extensions["framefarm"])
    assert stored(http, "files/incoming") == {"files/incoming/" + "b" * 64 + "-0123456789abcdef"}
