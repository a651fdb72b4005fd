"""The OpenAPI description (backend/framefarm/gateway/openapi.yaml) against the running app.

The spec is valid OpenAPI 3.1; it lists exactly the app's routes and methods; and a real
flow through every operation (submit, claim, heartbeat, result, assembly, download, and
the usual refusals) answers only with statuses the spec documents, each body valid
against the spec's schema for it. A route added without its description fails here.
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

from apitools import bearer, claim, farm_of, frames_zip, job_body, lease, scene_bytes, scene_sha, wait_for
from farmtools import sha256
from framefarm.gateway import archive, blender_builds
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
        if rule.endpoint != "static":
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
    held = {**worker, **lease(parts[0]["token"])}
    files = c(http.get(f"/v1/parts/{parts[0]['id']}/scene", headers=held), "GET", "/v1/parts/{pid}/scene")["files"]
    fetched = http.get(f"/v1/parts/{parts[0]['id']}/files/{files['scene.blend']}", headers=held)
    c(fetched, "GET", "/v1/parts/{pid}/files/{sha}")
    assert fetched.data == scene_bytes
    c(http.put(f"/v1/parts/{parts[0]['id']}/result", data=b"junk", headers=held), "PUT", "/v1/parts/{pid}/result")
    assert c(http.post(f"/v1/parts/{parts[0]['id']}/result/upload", json={"size": 10}, headers=held),
             "POST", "/v1/parts/{pid}/result/upload") == {"url": None, "id": None}
    c(http.post(f"/v1/parts/{parts[0]['id']}/result", json={"id": "0" * 16}, headers=held),
      "POST", "/v1/parts/{pid}/result")
    for part in parts:
        c(http.put(f"/v1/parts/{part['id']}/result", data=frames_zip(part["frames"]),
                   headers={**worker, **lease(part["token"])}), "PUT", "/v1/parts/{pid}/result")
    c(http.put(f"/v1/parts/{parts[0]['id']}/result", data=b"late", headers=held), "PUT", "/v1/parts/{pid}/result")

    farm = farm_of(http)
    wait_for(lambda: archive.assemble_pending(farm) or farm.redis.hget(f"ff:job:{job['id']}", "status") == "done",
             "the job to be assembled")
    done = c(http.get(f"/v1/jobs/{job['id']}", headers=client), "GET", "/v1/jobs/{job_id}")
    link = c(http.get(f"/v1/jobs/{job['id']}/archive", headers=client), "GET", "/v1/jobs/{job_id}/archive")
    assert link is None
    download = urlsplit(done["download_url"])
    c(http.get(f"{download.path}?{download.query}"), "GET", "/v1/download/{job_id}")
    c(http.get(f"{download.path}?expires=1&sig=x"), "GET", "/v1/download/{job_id}")
    c(http.post(f"/v1/jobs/{job['id']}/cancel", headers=client), "POST", "/v1/jobs/{job_id}/cancel")
    c(http.get("/v1/jobs/0123456789ab", headers=client), "GET", "/v1/jobs/{job_id}")

    other = c(http.post("/v1/jobs", json=job_body(scene_sha), headers=client), "POST", "/v1/jobs")
    for action in ("release", "failure"):
        part = claim(http, tokens.worker, wid)
        c(http.post(f"/v1/parts/{part['id']}/{action}", json={"message": "m"},
                    headers={**worker, **lease(part["token"])}), "POST", f"/v1/parts/{{pid}}/{action}")
        c(http.post(f"/v1/parts/{part['id']}/{action}", headers=worker), "POST", f"/v1/parts/{{pid}}/{action}")
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
    held = {**worker, **lease(part["token"])}
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
