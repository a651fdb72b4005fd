"""Knowing a hash is not enough to use another client's file (issue 9, item 2).

Reproduced before the fix: client B submitted client A's scene hash without uploading a
byte and downloaded A's frames; `POST /v1/files/missing` told anyone whether a hash was
stored; `PUT /v1/files/<sha>` with an empty body answered `stored: false`. Now each file
records the owners who uploaded its bytes and a client may reference only those (admins
any); `files/missing` answers per owner; uploading bytes the farm already holds costs the
upload once per owner but never a second copy; an empty or wrong body is a 400 that reads
the same whoever stores the file. The attacks run against a live gunicorn gateway (local
storage) and, for direct uploads, against Cloud Storage (the emulator).
"""
from __future__ import annotations

import dataclasses
import re
from types import SimpleNamespace

import pytest
import requests

from apitools import bearer, claim, expect_error, farm_of, job_body, lease, register_worker, scene_bytes, \
    submit, unchanged, upload
from farmtools import sha256
from framefarm.gateway import cleanup, keys
from framefarm.gateway.app import create_app
from framefarm.gateway.auth import create_token
from livetools import live_gateway

__all__ = ["scene_bytes"]  # a fixture, imported for pytest


@pytest.fixture
def farm(cluster, scene_bytes):
    """A live gateway; client A uploaded a scene, client B has uploaded nothing."""
    http = live_gateway(cluster)
    a, b = cluster.tokens.client, cluster.tokens.client2
    return SimpleNamespace(http=http, a=a, b=b, sha=upload(http, a, scene_bytes), scene=scene_bytes)


def jobs_of(http, token: str) -> list:
    return http.get("/v1/jobs", headers=bearer(token)).get_json()["jobs"]


def missing(http, token: str, hashes: list[str]) -> list[str]:
    resp = http.post("/v1/files/missing", json={"hashes": hashes}, headers=bearer(token))
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()["missing"]


def stored_copies(http, sha: str) -> list[str]:
    """Every object in the storage folder that holds these bytes' name (temporary files included)."""
    root = farm_of(http).storage.root
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and sha in p.name)


def test_b_cannot_submit_as_scene_a_hash_it_never_uploaded(farm):
    with unchanged(farm.http):
        err = expect_error(farm.http.post("/v1/jobs", json=job_body(farm.sha), headers=bearer(farm.b)),
                           400, "missing_files")
    assert err["missing"] == [farm.sha]
    assert jobs_of(farm.http, farm.b) == []
    never = "0" * 64  # a hash nobody uploaded is refused in the very same words
    assert expect_error(farm.http.post("/v1/jobs", json=job_body(never), headers=bearer(farm.b)),
                        400)["message"] == err["message"]


def test_files_missing_answers_per_client(farm):
    never = "0" * 64
    with unchanged(farm.http):
        assert missing(farm.http, farm.b, [farm.sha, never]) == [farm.sha, never], "A's file reads as absent"
        assert missing(farm.http, farm.a, [farm.sha, never]) == [never]


def test_b_uploading_the_same_bytes_pays_once_and_may_then_use_them(farm):
    resp = farm.http.put(f"/v1/files/{farm.sha}", data=farm.scene, headers=bearer(farm.b))
    assert resp.status_code == 200 and resp.get_json() == {"sha256": farm.sha, "stored": False,
                                                            "size": len(farm.scene)}
    assert stored_copies(farm.http, farm.sha) == [keys.scene_file(farm.sha)], "one copy, whoever uploads it"
    assert missing(farm.http, farm.b, [farm.sha]) == []
    assert submit(farm.http, farm.b, farm.sha)["status"] == "queued"


@pytest.mark.parametrize("body", [b"", b"not the scene"], ids=["empty", "wrong"])
def test_an_empty_or_wrong_body_is_refused_and_tells_nothing(farm, body):
    never = sha256(farm.scene + b"never uploaded")
    with unchanged(farm.http):
        errors = [expect_error(farm.http.put(f"/v1/files/{sha}", data=body, headers=bearer(farm.b)),
                               400, "hash_mismatch") for sha in (farm.sha, never)]
    # Stored for someone else or never stored at all: the same answer, but for the hash asked about.
    assert errors[0]["message"].replace(farm.sha, "SHA") == errors[1]["message"].replace(never, "SHA")
    assert missing(farm.http, farm.b, [farm.sha]) == [farm.sha]


def test_an_admin_may_reference_any_stored_file(farm, cluster):
    admin = cluster.tokens.admin
    assert missing(farm.http, admin, [farm.sha]) == []
    assert submit(farm.http, admin, farm.sha)["status"] == "queued"


# --- in one process: clean-up, files stored before owners were recorded, Cloud Storage ------------

@pytest.fixture(params=["local", "gcs"])
def http(request, settings):
    """A gateway app with no grace period (a sweep deletes whatever nothing holds), on a local
    folder or on Cloud Storage."""
    changes: dict = {"files_grace_s": 0}
    if request.param == "gcs":
        changes["storage"] = request.getfixturevalue("gcs").storage_url()
    return create_app(dataclasses.replace(settings, **changes)).test_client()


def send(http, token: str, data: bytes, sha: str | None = None):
    """Upload `data` as the file `sha` (by default its own hash) as the client does: straight to
    storage and committed where the farm hands out upload URLs (Cloud Storage's resumable
    sessions), else streamed through the gateway."""
    sha = sha or sha256(data)
    direct = http.post("/v1/files/uploads", json={"files": {sha: len(data)}}, headers=bearer(token)).get_json()
    if not direct["direct"]:
        return http.put(f"/v1/files/{sha}", data=data, headers=bearer(token))
    target = direct["uploads"][sha]
    assert requests.put(target["url"], data=data, timeout=30).status_code in (200, 201)
    return http.post(f"/v1/files/{sha}/commit", json={"id": target["id"]}, headers=bearer(token))


def scene_objects(http) -> list[str]:
    return sorted(o.key for o in farm_of(http).storage.list_prefix(keys.FILES))


def test_both_upload_paths_record_the_owner_and_keep_one_copy(http, tokens, scene_bytes):
    sha = sha256(scene_bytes)
    assert send(http, tokens.client, scene_bytes).status_code == 201
    assert missing(http, tokens.client2, [sha]) == [sha]
    again = send(http, tokens.client2, scene_bytes)
    assert (again.status_code, again.get_json()["stored"]) == (200, False)
    assert scene_objects(http) == [keys.scene_file(sha)], "no second copy, no upload left behind"
    assert missing(http, tokens.client2, [sha]) == []
    stranger = create_token(farm_of(http).redis, "client")
    for body in (b"", scene_bytes[:-1] + b"?"):
        expect_error(send(http, stranger, body, sha), 400, "hash_mismatch")
    assert missing(http, stranger, [sha]) == [sha]
    assert scene_objects(http) == [keys.scene_file(sha)], "refused bytes are not kept"



def test_clean_up_forgets_the_owners_with_the_file(http, tokens, scene_bytes):
    sha = upload(http, tokens.client, scene_bytes)
    farm = farm_of(http)
    assert farm.redis.smembers(keys.file_owners(sha))
    assert cleanup.sweep(farm).deleted_files == [sha]
    assert not farm.redis.exists(keys.file_owners(sha))
    assert missing(http, tokens.client, [sha]) == [sha]


def test_a_file_stored_before_owners_were_recorded_is_uploaded_once_more_and_running_jobs_keep_it(
        http, tokens, scene_bytes):
    sha = upload(http, tokens.client, scene_bytes)
    job = submit(http, tokens.client, sha)
    wid = register_worker(http, tokens.worker)
    part = claim(http, tokens.worker, wid)
    farm = farm_of(http)
    farm.redis.delete(keys.file_owners(sha))  # as a farm before this change left it
    assert missing(http, tokens.client, [sha]) == [sha], "nobody owns it: its uploader sends it once more"
    # The job already running keeps its files: a worker fetches them as before.
    got = http.get(f"/v1/parts/{part['id']}/files/{sha}", headers={**bearer(tokens.worker), **lease(part)})
    assert got.status_code in (200, 302) and part["job"] == job["id"]
    assert send(http, tokens.client, scene_bytes).status_code == 200
    assert missing(http, tokens.client, [sha]) == [] and scene_objects(http) == [keys.scene_file(sha)]
    assert re.fullmatch(r"[0-9a-f]{20}", farm.redis.smembers(keys.file_owners(sha)).pop())
