"""The OpenAPI description (backend/framefarm/gateway/openapi.yaml) against the running app.

The spec is valid OpenAPI 3.1; it lists exactly the app's routes and methods; and a real
flow through every operation (submit, claim, heartbeat, result, assembly, download, and
the usual refusals) answers only with statuses the spec documents, each body valid
against the spec's schema for it. A route added without its description fails here.

Requests are checked against the same spec before any view runs (contract.py): what it
refuses, it refuses in the project's error shape, naming the field, before touching
anything, and never ahead of a 401/403. The live fuzzing is in test_schemathesis.py.
"""
from __future__ import annotations

import dataclasses
import re
import urllib.request
from collections import defaultdict
from importlib import resources
from urllib.parse import urlsplit

import pytest
import yaml
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_openapi
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from apitools import (bearer, claim, expect_error, farm_of, frames_zip, job_body, lease, register_worker, scene_bytes,
                      scene_sha, unchanged)
from farmtools import sha256, wait_for, zip_bytes
from framefarm.gateway import archive, blender_builds, previews
from framefarm.gateway.app import create_app

__all__ = ["scene_bytes", "scene_sha"]  # fixtures, imported for pytest

METHODS = {"get", "put", "post", "delete", "patch"}
SPEC_URI = "urn:framefarm:openapi"


@pytest.fixture(scope="module")
def spec() -> dict:
    return yaml.safe_load(resources.files("framefarm.gateway").joinpath("openapi.yaml").read_text())


def pointer(*parts: str) -> str:
    return "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in parts)


class Contract:
    """Checks answers against the spec and remembers which operations were seen."""

    def __init__(self, spec: dict) -> None:
        self.spec = spec
        resource = Resource.from_contents(spec, default_specification=DRAFT202012)
        self.registry = Registry().with_resource(SPEC_URI, resource)
        self.seen: set[tuple[str, str]] = set()

    def operations(self) -> set[tuple[str, str]]:
        return {(m, p) for p, ops in self.spec["paths"].items() for m in ops if m in METHODS}

    def check(self, resp, method: str, path: str):
        """`resp` answered `method path` as the spec says; returns its JSON body, if any."""
        method = method.lower()
        responses = self.spec["paths"][path][method]["responses"]
        status = str(resp.status_code)
        key = status if status in responses else "default" if resp.status_code >= 400 else None
        assert key in responses, f"{method.upper()} {path} answered {status}, which the spec does not describe"
        where = pointer("paths", path, method, "responses", key)
        if "$ref" in responses[key]:
            where = responses[key]["$ref"][1:]
        described = self.resolve(where)
        content = described.get("content", {})
        for header, about in described.get("headers", {}).items():
            assert not about.get("required") or header in resp.headers, f"{header} missing"
        self.seen.add((method, path))
        if not content:  # a redirect may carry a courtesy HTML page; a 204 nothing at all
            assert resp.status_code != 204 or resp.data == b"", f"{method} {path} 204 has a body"
            return None
        assert resp.mimetype in content, f"{method} {path} {status} answered {resp.mimetype}, not {list(content)}"
        if resp.mimetype != "application/json":
            return None
        schema = {"$ref": f"{SPEC_URI}#{where}{pointer('content', 'application/json', 'schema')}"}
        body = resp.get_json()
        Draft202012Validator(schema, registry=self.registry).validate(body)
        return body

    def resolve(self, where: str) -> dict:
        return self.registry.resolver().lookup(f"{SPEC_URI}#{where}").contents


@pytest.fixture
def contract(spec) -> Contract:
    return Contract(spec)


def test_the_spec_is_valid_openapi_3_1(spec):
    validate_openapi(spec)
    assert spec["openapi"].startswith("3.1.")


def test_the_gateway_serves_its_spec(http, spec):
    resp = http.get("/v1/openapi.yaml")
    assert resp.status_code == 200 and resp.mimetype == "application/yaml"
    assert yaml.safe_load(resp.data) == spec


def app_routes(app) -> dict[str, set[str]]:
    routes: dict[str, set[str]] = defaultdict(set)
    for rule in app.url_map.iter_rules():
        # The dashboard's pages (and /metrics) are not the API: openapi.yaml describes /v1.
        if rule.endpoint != "static" and not rule.endpoint.startswith(("dashboard.", "metrics.")):
            path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
            routes[path] |= {m.lower() for m in rule.methods} - {"head", "options"}
    return dict(routes)


def test_the_spec_describes_exactly_the_apps_routes_and_methods(app, spec):
    described = {path: {m for m in ops if m in METHODS} for path, ops in spec["paths"].items()}
    assert app_routes(app) == described


def test_a_schema_check_can_fail(contract, http):
    """The checker itself: a body that breaks the schema is caught."""
    resp = http.get("/healthz")
    resp.set_data(b'{"ok": "yes"}')
    with pytest.raises(Exception, match="yes"):
        contract.check(resp, "GET", "/healthz")


def test_a_real_flow_answers_as_the_spec_says(http, tokens, scene_sha, scene_bytes, contract, tmp_path):
    c, client, worker = contract.check, bearer(tokens.client), bearer(tokens.worker)
    c(http.get("/healthz"), "GET", "/healthz")
    c(http.get("/readyz"), "GET", "/readyz")
    c(http.get("/v1/gateways"), "GET", "/v1/gateways")
    c(http.get("/v1/openapi.yaml"), "GET", "/v1/openapi.yaml")
    assert c(http.post("/v1/files/missing", json={"hashes": [scene_sha, sha256(b"new")]}, headers=client),
             "POST", "/v1/files/missing") == {"missing": [sha256(b"new")]}
    c(http.put(f"/v1/files/{sha256(b'new')}", data=b"new", headers=client), "PUT", "/v1/files/{sha}")
    c(http.put(f"/v1/files/{scene_sha}", data=scene_bytes, headers=client), "PUT", "/v1/files/{sha}")
    c(http.put(f"/v1/files/{sha256(b'x')}", data=b"y", headers=client), "PUT", "/v1/files/{sha}")
    # A local folder takes no direct uploads: the client is told to stream through the gateway.
    assert c(http.post("/v1/files/uploads", json={"files": {sha256(b"z"): 1}}, headers=client),
             "POST", "/v1/files/uploads") == {"direct": False, "uploads": {}}
    c(http.post("/v1/files/uploads", json={"files": {}}, headers=client), "POST", "/v1/files/uploads")
    c(http.post(f"/v1/files/{sha256(b'z')}/commit", json={"id": "0" * 16}, headers=client),
      "POST", "/v1/files/{sha}/commit")

    submitted = http.post("/v1/jobs", json=job_body(scene_sha), headers={**client, "Idempotency-Key": "one"})
    job = c(submitted, "POST", "/v1/jobs")
    c(http.post("/v1/jobs", json=job_body(scene_sha), headers={**client, "Idempotency-Key": "one"}), "POST", "/v1/jobs")
    c(http.post("/v1/jobs", json=job_body(scene_sha, step=0), headers=client), "POST", "/v1/jobs")
    c(http.get("/v1/jobs", headers=client), "GET", "/v1/jobs")
    c(http.get(f"/v1/jobs/{job['id']}?parts=1", headers=client), "GET", "/v1/jobs/{job_id}")
    c(http.get(f"/v1/jobs/{job['id']}/archive", headers=client), "GET", "/v1/jobs/{job_id}/archive")

    wid = c(http.post("/v1/workers", json={"name": "w", "blender_version": "3.4.1"}, headers=worker),
            "POST", "/v1/workers")["id"]
    parts = [c(http.post(f"/v1/workers/{wid}/claim", json={"wait": 0}, headers=worker),
               "POST", "/v1/workers/{wid}/claim")["part"] for _ in range(2)]
    c(http.post(f"/v1/workers/{wid}/claim", json={"wait": 0}, headers=worker), "POST", "/v1/workers/{wid}/claim")
    c(http.post(f"/v1/workers/{wid}/heartbeat", json={"parts": [{"id": p["id"], "token": p["token"]} for p in parts]},
                headers=worker), "POST", "/v1/workers/{wid}/heartbeat")
    held = {**worker, **lease(parts[0])}
    files = c(http.get(f"/v1/parts/{parts[0]['id']}/scene", headers=held), "GET", "/v1/parts/{pid}/scene")["files"]
    fetched = http.get(f"/v1/parts/{parts[0]['id']}/files/{files['scene.blend']}", headers=held)
    c(fetched, "GET", "/v1/parts/{pid}/files/{sha}")
    assert fetched.data == scene_bytes
    c(http.put(f"/v1/parts/{parts[0]['id']}/result", data=b"junk", headers=held), "PUT", "/v1/parts/{pid}/result")
    assert c(http.post(f"/v1/parts/{parts[0]['id']}/result/upload", json={"size": 10}, headers=held),
             "POST", "/v1/parts/{pid}/result/upload") == {"url": None, "id": None}
    c(http.post(f"/v1/parts/{parts[0]['id']}/result", json={"id": "0" * 16}, headers=held),
      "POST", "/v1/parts/{pid}/result")
    c(http.get(f"/v1/jobs/{job['id']}/previews", headers=client), "GET", "/v1/jobs/{job_id}/previews")
    for part in parts:  # each with the small preview of its first frame
        result = zip_bytes({**{f"{f:04d}.png": b"f" for f in part["frames"]},
                            f"_meta/previews/{part['frames'][0]}.jpg": b"\xff\xd8\xff" + b"\0" * 16})
        c(http.put(f"/v1/parts/{part['id']}/result", data=result,
                   headers={**worker, **lease(part)}), "PUT", "/v1/parts/{pid}/result")
    c(http.put(f"/v1/parts/{parts[0]['id']}/result", data=b"late", headers=held), "PUT", "/v1/parts/{pid}/result")
    shown = c(http.get(f"/v1/jobs/{job['id']}/previews", headers=client), "GET", "/v1/jobs/{job_id}/previews")
    assert shown["frames"] == [p["frames"][0] for p in parts]
    for frame in (shown["frames"][0], 1000, "x"):  # a preview; none; not a frame
        c(http.get(f"/v1/jobs/{job['id']}/previews/{frame}", headers=client), "GET", "/v1/jobs/{job_id}/previews/{frame}")
    with http.application.app_context():
        thumb = urlsplit(previews.signed_link(farm_of(http), job["id"], shown["frames"][0]))
    c(http.get(f"{thumb.path}?{thumb.query}"), "GET", "/v1/preview/{job_id}/{frame}")
    c(http.get(f"{thumb.path}?expires=1&sig=x"), "GET", "/v1/preview/{job_id}/{frame}")

    farm = farm_of(http)
    wait_for(lambda: archive.assemble_pending(farm) or farm.redis.hget(f"ff:job:{job['id']}", "status") == "done",
             10, "the job to be assembled", interval=0.02)
    done = c(http.get(f"/v1/jobs/{job['id']}", headers=client), "GET", "/v1/jobs/{job_id}")
    link = c(http.get(f"/v1/jobs/{job['id']}/archive", headers=client), "GET", "/v1/jobs/{job_id}/archive")
    assert link is None
    download = urlsplit(done["download_url"])
    c(http.get(f"{download.path}?{download.query}"), "GET", "/v1/download/{job_id}")
    c(http.get(f"{download.path}?expires=1&sig=x"), "GET", "/v1/download/{job_id}")
    c(http.post(f"/v1/jobs/{job['id']}/cancel", headers=client), "POST", "/v1/jobs/{job_id}/cancel")
    c(http.get("/v1/jobs/0123456789ab", headers=client), "GET", "/v1/jobs/{job_id}")

    # A job with a finishing task: its frame parts, then its encode part, which fetches its inputs.
    encoder = c(http.post("/v1/workers", json={"name": "e", "blender_version": "3.4.1", "capabilities": ["encode"]},
                          headers=worker), "POST", "/v1/workers")["id"]
    movie = c(http.post("/v1/jobs", json=job_body(scene_sha, finish={"kind": "encode", "options": {"video": "preview"}}),
                        headers=client), "POST", "/v1/jobs")
    for _ in range(2):
        part = c(http.post(f"/v1/workers/{encoder}/claim", json={"wait": 0}, headers=worker),
                 "POST", "/v1/workers/{wid}/claim")["part"]
        c(http.put(f"/v1/parts/{part['id']}/result", data=frames_zip(part["frames"]),
                   headers={**worker, **lease(part)}), "PUT", "/v1/parts/{pid}/result")
    part = c(http.post(f"/v1/workers/{encoder}/claim", json={"wait": 0}, headers=worker),
             "POST", "/v1/workers/{wid}/claim")["part"]
    assert part["kind"] == "encode"
    c(http.get(f"/v1/jobs/{movie['id']}", headers=client), "GET", "/v1/jobs/{job_id}")
    mine = {**worker, **lease(part)}
    c(http.get(f"/v1/parts/{part['id']}/inputs", headers=mine), "GET", "/v1/parts/{pid}/inputs")
    for index in (0, 9):
        c(http.get(f"/v1/parts/{part['id']}/inputs/{index}", headers=mine), "GET", "/v1/parts/{pid}/inputs/{index}")
    c(http.put(f"/v1/parts/{part['id']}/result", data=zip_bytes({"preview.mp4": b"movie"}), headers=mine),
      "PUT", "/v1/parts/{pid}/result")
    wait_for(lambda: archive.assemble_pending(farm) or farm.redis.hget(f"ff:job:{movie['id']}", "status") == "done",
             10, "the movie job to be assembled", interval=0.02)
    link = urlsplit(c(http.get(f"/v1/jobs/{movie['id']}", headers=client), "GET", "/v1/jobs/{job_id}")["movie_url"])
    got = http.get(f"{link.path}?{link.query}")
    c(got, "GET", "/v1/download/{job_id}/movie")
    assert got.data == b"movie" and got.mimetype == "video/mp4"
    c(http.get(f"{link.path}?expires=1&sig=x"), "GET", "/v1/download/{job_id}/movie")

    other = c(http.post("/v1/jobs", json=job_body(scene_sha), headers=client), "POST", "/v1/jobs")
    for action in ("release", "failure"):
        part = claim(http, tokens.worker, wid)
        c(http.post(f"/v1/parts/{part['id']}/{action}", json={"message": "m"},
                    headers={**worker, **lease(part)}), "POST", f"/v1/parts/{{pid}}/{action}")
        c(http.post(f"/v1/parts/{part['id']}/{action}", headers=worker), "POST", f"/v1/parts/{{pid}}/{action}")
    for action in ("pause", "resume"):
        c(http.post(f"/v1/jobs/{other['id']}/{action}", headers=client), "POST", f"/v1/jobs/{{job_id}}/{action}")
    c(http.post(f"/v1/jobs/{other['id']}/priority", json={"priority": 2}, headers=client),
      "POST", "/v1/jobs/{job_id}/priority")
    c(http.post(f"/v1/jobs/{other['id']}/retry", headers=client), "POST", "/v1/jobs/{job_id}/retry")
    admin = bearer(tokens.admin)
    c(http.get("/v1/workers", headers=admin), "GET", "/v1/workers")
    for action in ("drain", "undrain"):
        c(http.post(f"/v1/workers/{wid}/{action}", headers=admin), "POST", f"/v1/workers/{{wid}}/{action}")
    c(http.get("/v1/webhooks/key", headers=client), "GET", "/v1/webhooks/key")
    sub = c(http.post("/v1/webhooks", json={"url": "https://hooks.example.com/farm", "format": "slack"},
                      headers=admin), "POST", "/v1/webhooks")
    c(http.get("/v1/webhooks", headers=admin), "GET", "/v1/webhooks")
    for _ in range(2):  # removed, then 404
        c(http.delete(f"/v1/webhooks/{sub['id']}", headers=admin), "DELETE", "/v1/webhooks/{sid}")
    c(http.post(f"/v1/jobs/{other['id']}/cancel", headers=client), "POST", "/v1/jobs/{job_id}/cancel")
    c(http.delete(f"/v1/workers/{wid}", headers=worker), "DELETE", "/v1/workers/{wid}")
    c(http.post(f"/v1/workers/{wid}/heartbeat", json={}, headers=worker), "POST", "/v1/workers/{wid}/heartbeat")
    c(http.get("/v1/jobs", headers=worker), "GET", "/v1/jobs")

    assert c(http.get("/v1/blender", headers=worker), "GET", "/v1/blender")["error"]["code"] == "no_blender"
    tarball = tmp_path / "blender.tar.gz"
    tarball.write_bytes(b"a build")
    blender_builds.publish(farm.redis, farm.storage, tarball, "3.4.1")
    build = c(http.get("/v1/blender", headers=worker), "GET", "/v1/blender")
    link = urlsplit(build["url"])
    assert http.get(f"{link.path}?{link.query}").data == b"a build"
    c(http.get(f"{link.path}?{link.query}"), "GET", "/v1/blender/{sha}")
    c(http.get(f"{link.path}?expires=1&sig=x"), "GET", "/v1/blender/{sha}")
    assert contract.seen == contract.operations(), "operations the flow never exercised"



def put_to(url: str, data: bytes) -> int:
    """A PUT to an upload URL, as a client or worker sends it: no token."""
    with urllib.request.urlopen(urllib.request.Request(url, data=data, method="PUT"), timeout=30) as resp:
        return resp.status


def test_direct_transfers_answer_as_the_spec_says(gcs, settings, tokens, scene_bytes, contract, tmp_path):
    """With Cloud Storage (the emulator), files and results go to upload URLs and are committed;
    scene files come with signed URLs. Only the gateway's own answers are checked here."""
    http = create_app(dataclasses.replace(settings, storage=gcs.storage_url())).test_client()
    c, client, worker = contract.check, bearer(tokens.client), bearer(tokens.worker)
    sha = sha256(scene_bytes)
    plan = c(http.post("/v1/files/uploads", json={"files": {sha: len(scene_bytes)}}, headers=client),
             "POST", "/v1/files/uploads")
    assert plan["direct"] is True and list(plan["uploads"]) == [sha]
    assert put_to(plan["uploads"][sha]["url"], scene_bytes) in (200, 201)
    commit = f"/v1/files/{sha}/commit"
    assert c(http.post(commit, json={"id": plan["uploads"][sha]["id"]}, headers=client), "POST",
             "/v1/files/{sha}/commit") == {"sha256": sha, "stored": True, "size": len(scene_bytes)}

    again = http.post("/v1/files/uploads", json={"files": {sha: len(scene_bytes)}}, headers=client).get_json()
    put_to(again["uploads"][sha]["url"], scene_bytes)
    assert c(http.post(commit, json={"id": again["uploads"][sha]["id"]}, headers=client), "POST",
             "/v1/files/{sha}/commit")["stored"] is False
    forged = http.post("/v1/files/uploads", json={"files": {sha256(b"real"): 6}}, headers=client).get_json()
    put_to(forged["uploads"][sha256(b"real")]["url"], b"forged")
    refused = http.post(f"/v1/files/{sha256(b'real')}/commit", json={"id": forged["uploads"][sha256(b"real")]["id"]},
                        headers=client)
    assert c(refused, "POST", "/v1/files/{sha}/commit")["error"]["code"] == "hash_mismatch"
    assert http.post("/v1/files/missing", json={"hashes": [sha, sha256(b"real")]},
                     headers=client).get_json() == {"missing": [sha256(b"real")]}
    assert list(farm_of(http).storage.list_prefix("files/incoming")) == [], "refused bytes were kept"
    too_big = http.post("/v1/files/uploads", json={"files": {sha: settings.max_upload_bytes + 1}}, headers=client)
    assert c(too_big, "POST", "/v1/files/uploads") and too_big.status_code == 413

    job = c(http.post("/v1/jobs", json=job_body(sha, frames="1-2"), headers=client), "POST", "/v1/jobs")
    wid = http.post("/v1/workers", json={"blender_version": "3.4.1"}, headers=worker).get_json()["id"]
    part = claim(http, tokens.worker, wid)
    held = {**worker, **lease(part)}
    scene = c(http.get(f"/v1/parts/{part['id']}/scene", headers=held), "GET", "/v1/parts/{pid}/scene")
    with urllib.request.urlopen(scene["urls"][sha], timeout=30) as resp:
        assert resp.read() == scene_bytes
    result = frames_zip(part["frames"])
    upload = c(http.post(f"/v1/parts/{part['id']}/result/upload", json={"size": len(result)}, headers=held),
               "POST", "/v1/parts/{pid}/result/upload")
    put_to(upload["url"], result)
    done = c(http.post(f"/v1/parts/{part['id']}/result", json={"id": upload["id"]}, headers=held),
             "POST", "/v1/parts/{pid}/result")
    assert done == {"ok": True, "job_status": "assembling"}
    assert job["parts"]["total"] == 1

    tarball = tmp_path / "blender.tar.xz"
    tarball.write_bytes(b"a build in the bucket")
    blender_builds.publish(farm_of(http).redis, farm_of(http).storage, tarball, "4.2")
    build = c(http.get("/v1/blender", headers=worker), "GET", "/v1/blender")
    assert build["url"].startswith(gcs.url) and "X-Goog-Signature=" in build["url"]  # no gateway in the way
    with urllib.request.urlopen(build["url"], timeout=30) as resp:
        assert resp.read() == b"a build in the bucket"


# --- requests are checked against the spec ---------------------------------------------------

# What a fuzzer found the spec and the views disagreeing on, and the other ways the contract
# now refuses: (method, path, body or raw text, role) -> (status, code, words of the message).
REFUSED = {
    "empty sha in files/uploads": (("POST", "/v1/files/uploads", {"files": {"": 1}}, "client"),
                                   (400, "bad_hash", "'' is not a SHA-256")),
    "negative size in files/uploads": (("POST", "/v1/files/uploads", {"files": {"a" * 64: -1}}, "client"),
                                       (400, "bad_size", "whole number of bytes")),
    "empty manifest path": (("POST", "/v1/jobs", {"manifest": {"": "SCENE", "scene.blend": "SCENE"}}, "client"),
                            (400, "bad_manifest", "manifest path ''")),
    "manifest path climbing out": (("POST", "/v1/jobs", {"manifest": {"../x": "SCENE", "scene.blend": "SCENE"}},
                                    "client"), (400, "bad_manifest", "'../x'")),
    "main ending in a newline": (("POST", "/v1/jobs", {"manifest": {"scene.blend\n": "SCENE"}, "main": "scene.blend\n"},
                                  "client"), (400, "bad_manifest", "without control characters")),
    "sha ending in a newline": (("POST", "/v1/files/missing", {"hashes": ["a" * 64 + "\n"]}, "client"),
                                (400, "bad_hash", "is not a SHA-256")),
    "blender_version 3.4 and a newline": (("POST", "/v1/workers", {"blender_version": "3.4\n"}, "worker"),
                                          (400, "bad_version", "'3.4\\n'")),
    "blender_version 0.0.": (("POST", "/v1/workers", {"blender_version": "0.0."}, "worker"),
                             (400, "bad_version", "'0.0.'")),
    "negative job long-poll wait": (("GET", "/v1/jobs/JOB?wait=-1&rev=0", None, "client"),
                                    (400, "bad_request", "query parameter wait")),
    "job long-poll wait not a number": (("GET", "/v1/jobs/JOB?wait=soon&rev=0", None, "client"),
                                        (400, "bad_request", "'soon'")),
    "negative claim wait": (("POST", "/v1/workers/WID/claim", {"wait": -1}, "worker"), (400, "bad_request", "wait")),
    "NaN claim wait": (("POST", "/v1/workers/WID/claim", '{"wait": NaN}', "worker"),
                       (400, "bad_request", "not valid JSON")),
    "step 2.0": (("POST", "/v1/jobs", {"step": 2.0}, "client"), (400, "bad_step", "step must be a whole number")),
    "chunk 0": (("POST", "/v1/jobs", {"chunk": 0}, "client"), (400, "bad_chunk", "got 0")),
    "heartbeat part without token": (("POST", "/v1/workers/WID/heartbeat", {"parts": [{"id": "x"}]}, "worker"),
                                     (400, "bad_request", "parts must be a list")),
    "job id of the wrong form": (("GET", "/v1/jobs/not-a-job", None, "client"), (404, "not_found", "not-a-job")),
    "no JSON body where one is required": (("POST", "/v1/jobs", "", "client"), (400, "bad_request", "JSON body")),
    "a body that is not JSON": (("POST", "/v1/jobs", b"manifest=x", "client"),
                                (415, "unsupported_media_type", "application/json")),
}


@pytest.mark.parametrize("request_, answer", REFUSED.values(), ids=REFUSED.keys())
def test_a_request_that_breaks_the_spec_is_refused_before_anything_happens(http, tokens, scene_sha, request_,
                                                                          answer):
    method, path, body, role = request_
    wid = register_worker(http, tokens.worker)
    job = http.post("/v1/jobs", json=job_body(scene_sha), headers=bearer(tokens.client)).get_json()
    path = path.replace("JOB", job["id"]).replace("WID", wid)
    if isinstance(body, dict) and path == "/v1/jobs":
        body = {k: ({p: scene_sha for p in v} if k == "manifest" else v)
                for k, v in {**job_body(scene_sha), **body}.items()}
    if isinstance(body, dict):
        kwargs = {"json": body}
    elif isinstance(body, bytes):
        kwargs = {"data": body, "content_type": "application/x-www-form-urlencoded"}
    else:
        kwargs = {} if body is None else {"data": body, "content_type": "application/json"}
    status, code, words = answer
    with unchanged(http):
        err = expect_error(http.open(path, method=method, headers=bearer(getattr(tokens, role)), **kwargs),
                           status, code)
    assert words in err["message"], err


def test_a_malformed_request_without_the_right_token_is_answered_401_or_403_first(http, tokens):
    with unchanged(http):
        expect_error(http.post("/v1/jobs", json={"step": 0}), 401, "unauthorized")
        expect_error(http.post("/v1/jobs", json={"step": 0}, headers=bearer(tokens.worker)), 403, "forbidden")
        expect_error(http.post("/v1/workers", json={"blender_version": "0.0."}, headers=bearer(tokens.client)),
                     403, "forbidden")


class Unreadable:
    """A request body that fails the request if anything reads it."""

    def read(self, *args):
        raise AssertionError("the body of a streamed upload was read")

    readline = readinto = read


def test_a_streamed_upload_is_checked_without_reading_its_body(http, tokens):
    """Its parameters are checked; its bytes are left to the view, which refuses a body over
    the limit from its Content-Length alone."""
    def put(sha: str):
        return http.put(f"/v1/files/{sha}", headers=bearer(tokens.client), environ_overrides={
            "wsgi.input": Unreadable(), "CONTENT_LENGTH": str(10 ** 12)})

    assert "'abc' is not a SHA-256" in expect_error(put("abc"), 400, "bad_hash")["message"]
    expect_error(put("a" * 64), 413, "too_large")


def test_405_answers_say_which_methods_are_allowed(http, tokens):
    resp = http.delete("/v1/jobs", headers=bearer(tokens.client))
    expect_error(resp, 405, "method_not_allowed")
    assert set(resp.headers["Allow"].split(", ")) >= {"GET", "POST"}
    # A path of its own is not an upload to /v1/files/{sha}, although that route matches it too.
    for path in ("/v1/files/missing", "/v1/files/uploads"):
        resp = http.put(path, data=b"x", headers=bearer(tokens.client))
        expect_error(resp, 405, "method_not_allowed")
        assert set(resp.headers["Allow"].split(", ")) == {"POST", "OPTIONS"}
        assert set(http.options(path).headers["Allow"].split(", ")) == {"POST", "OPTIONS"}


def x_error_codes(node) -> set[str]:
    if isinstance(node, dict):
        own = {node["x-error-code"]} if "x-error-code" in node else set()
        return own.union(*map(x_error_codes, node.values()))
    if isinstance(node, list):
        return set().union(*map(x_error_codes, node))
    return set()


def test_every_code_the_spec_assigns_is_documented(spec):
    documented = set(re.findall(r"[a-z_]+", spec["components"]["schemas"]["Error"]["properties"]["error"]
                                ["properties"]["code"]["description"]))
    assert x_error_codes(spec) - documented == set()
    assert {"bad_request", "unsupported_media_type", "method_not_allowed"} <= documented
