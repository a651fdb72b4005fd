"""The gateway's HTTP contract for clients: bad input gets a clear JSON error and loses nothing.

Every refusal is checked three ways: its status, the `{"error": {"code", "message"}}`
shape, and that the farm is exactly as it was (no job, no queued part, no stored
object). Lease and worker paths are in test_api_leases.py.
"""
from __future__ import annotations

import contextlib
import io
import json
import socket
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st
from PIL import Image

from apitools import (bearer, expect_error, farm_of, get_job, job_body, register_worker, scene_bytes,
                      scene_sha, snapshot, submit, unchanged, upload)
from farmtools import sha256

__all__ = ["scene_bytes", "scene_sha"]  # fixtures, imported for pytest

NO_JOB = "0123456789ab"


def post_job(http, token: str, body, **headers: str):
    return http.post("/v1/jobs", json=body, headers={**bearer(token), **headers})


def png_bytes() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (4, 4), "red").save(buf, "PNG")
    return buf.getvalue()


# (fields of the submission, given the uploaded scene's hash) -> error code
BAD_SUBMISSIONS = {
    "frames reversed": (lambda sha: {"frames": "10-1"}, "bad_frames"),
    "frames not numbers": (lambda sha: {"frames": "a-b"}, "bad_frames"),
    "frames true": (lambda sha: {"frames": True}, "bad_frames"),
    "frames of 5000 digits": (lambda sha: {"frames": "1-" + "9" * 5000}, "bad_frames"),
    "frames object with text": (lambda sha: {"frames": {"start": "1", "end": 4}}, "bad_frames"),
    "negative frame": (lambda sha: {"frames": {"start": -1, "end": 4}}, "bad_frames"),
    "step 0": (lambda sha: {"step": 0}, "bad_step"),
    "step -1": (lambda sha: {"step": -1}, "bad_step"),
    "step as text": (lambda sha: {"step": "2"}, "bad_step"),
    "step true": (lambda sha: {"step": True}, "bad_step"),
    "chunk 0": (lambda sha: {"chunk": 0}, "bad_chunk"),
    "chunk -1": (lambda sha: {"chunk": -1}, "bad_chunk"),
    "chunk as float": (lambda sha: {"chunk": 2.5}, "bad_chunk"),
    "priority too high": (lambda sha: {"priority": 1001}, "bad_priority"),
    "priority too low": (lambda sha: {"priority": -1001}, "bad_priority"),
    "path escapes with ..": (lambda sha: {"manifest": {"scene.blend": sha, "../x": sha}}, "bad_manifest"),
    "absolute path": (lambda sha: {"manifest": {"scene.blend": sha, "/abs": sha}}, "bad_manifest"),
    "path not normalised": (lambda sha: {"manifest": {"scene.blend": sha, "a/../b": sha}}, "bad_manifest"),
    "path is the scene folder": (lambda sha: {"manifest": {"scene.blend": sha, ".": sha}}, "bad_manifest"),
    "empty manifest": (lambda sha: {"manifest": {}}, "bad_manifest"),
    "hash not a sha256": (lambda sha: {"manifest": {"scene.blend": "abc"}}, "bad_hash"),
    "main not in manifest": (lambda sha: {"main": "other.blend"}, "bad_manifest"),
    "main not a .blend name": (lambda sha: {"manifest": {"scene.png": sha}, "main": "scene.png"}, "not_a_blend"),
    "name too long": (lambda sha: {"name": "n" * 201}, "bad_name"),
}


@pytest.mark.parametrize("fields, code", BAD_SUBMISSIONS.values(), ids=BAD_SUBMISSIONS.keys())
def test_bad_submission_is_refused_and_creates_nothing(http, tokens, scene_sha, fields, code):
    with unchanged(http):
        resp = post_job(http, tokens.client, job_body(scene_sha, **fields(scene_sha)))
        expect_error(resp, 400, code)


@pytest.mark.parametrize("what, data, says", [
    ("a PNG named main", png_bytes(), "PNG"),
    ("an empty file", b"", "empty"),
], ids=["png", "empty"])
def test_a_main_file_that_is_not_a_blend_is_refused(http, tokens, what, data, says):
    sha = upload(http, tokens.client, data)
    with unchanged(http):
        err = expect_error(post_job(http, tokens.client, job_body(sha)), 400, "not_a_blend")
    assert says in err["message"]


def test_a_truncated_blend_is_refused(http, tokens, scene_bytes):
    sha = upload(http, tokens.client, scene_bytes[: len(scene_bytes) // 2])
    with unchanged(http):
        err = expect_error(post_job(http, tokens.client, job_body(sha)), 400, "not_a_blend")
    assert "truncated" in err["message"]


def test_a_manifest_hash_never_uploaded_is_listed_as_missing(http, tokens, scene_sha):
    never = sha256(b"never uploaded")
    with unchanged(http):
        resp = post_job(http, tokens.client, job_body(scene_sha, manifest={"scene.blend": scene_sha,
                                                                           "tex/a.png": never}))
        err = expect_error(resp, 400, "missing_files")
    assert err["missing"] == [never]


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b"null", b""], ids=["malformed", "list", "null", "empty"])
def test_a_body_that_is_not_a_json_object_is_refused(http, tokens, body):
    with unchanged(http):
        resp = http.post("/v1/jobs", data=body, content_type="application/json", headers=bearer(tokens.client))
        expect_error(resp, 400)


def test_the_same_idempotency_key_twice_creates_one_job(http, tokens, scene_sha):
    first = post_job(http, tokens.client, job_body(scene_sha), **{"Idempotency-Key": "k1"})
    again = post_job(http, tokens.client, job_body(scene_sha), **{"Idempotency-Key": "k1"})
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.get_json()["id"] == again.get_json()["id"]
    other = post_job(http, tokens.client, job_body(scene_sha), **{"Idempotency-Key": "k2"})
    assert other.status_code == 201 and other.get_json()["id"] != first.get_json()["id"]
    listed = http.get("/v1/jobs", headers=bearer(tokens.client)).get_json()["jobs"]
    assert sorted(j["id"] for j in listed) == sorted({first.get_json()["id"], other.get_json()["id"]})


# --- uploads ---------------------------------------------------------------------------------

def test_an_upload_whose_bytes_do_not_match_its_hash_stores_nothing(http, tokens):
    with unchanged(http):
        resp = http.put(f"/v1/files/{sha256(b'promised')}", data=b"delivered", headers=bearer(tokens.client))
        err = expect_error(resp, 400, "hash_mismatch")
    assert sha256(b"delivered") in err["message"]


def test_an_upload_over_the_size_limit_stores_nothing(http, tokens, settings):
    data = b"x" * (settings.max_upload_bytes + 1)
    with unchanged(http):
        expect_error(http.put(f"/v1/files/{sha256(data)}", data=data, headers=bearer(tokens.client)), 413, "too_large")


@pytest.mark.parametrize("sha", ["abc", "A" * 64, "g" * 64, "a" * 65], ids=["short", "upper", "not-hex", "long"])
def test_an_unknown_hash_format_is_refused(http, tokens, sha):
    with unchanged(http):
        expect_error(http.put(f"/v1/files/{sha}", data=b"x", headers=bearer(tokens.client)), 400, "bad_hash")
        expect_error(http.post("/v1/files/missing", json={"hashes": [sha]}, headers=bearer(tokens.client)),
                     400, "bad_hash")


def test_files_missing_lists_only_what_the_farm_lacks(http, tokens):
    have = upload(http, tokens.client, b"have")
    lack = sha256(b"lack")
    resp = http.post("/v1/files/missing", json={"hashes": [have, lack, lack]}, headers=bearer(tokens.client))
    assert resp.status_code == 200 and resp.get_json() == {"missing": [lack]}


UPLOAD_LIMIT = 1024 * 1024


@pytest.fixture
def small_gateway(cluster):
    """A real gunicorn gateway that accepts uploads of at most UPLOAD_LIMIT bytes."""
    cluster.env["FRAMEFARM_MAX_UPLOAD_BYTES"] = str(UPLOAD_LIMIT)
    return cluster.add_gateway(processes=1)


def stored_files(cluster) -> list[str]:
    return [str(p) for p in (cluster.root / "storage").rglob("*") if p.is_file()]


def upload_head(cluster, length_header: str) -> bytes:
    return (f"PUT /v1/files/{'a' * 64} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
            f"{cluster.tokens.client}\r\n{length_header}\r\n\r\n").encode()


def test_an_oversized_upload_is_refused_before_its_body_is_sent(cluster, small_gateway):
    """Through gunicorn: the 413 arrives while the client has sent only its headers."""
    with socket.create_connection(("127.0.0.1", small_gateway.port), timeout=20) as sock:
        sock.sendall(upload_head(cluster, f"Content-Length: {10 ** 12}"))
        status, body = read_response(sock)
    assert status == 413 and json.loads(body)["error"]["code"] == "too_large"
    assert stored_files(cluster) == []


def test_a_chunked_upload_is_cut_off_once_it_passes_the_limit(cluster, small_gateway):
    """No Content-Length to refuse up front: the gateway counts as it streams."""
    block = b"x" * 65536
    with socket.create_connection(("127.0.0.1", small_gateway.port), timeout=20) as sock, \
            ThreadPoolExecutor(1) as pool:
        sock.sendall(upload_head(cluster, "Transfer-Encoding: chunked"))
        # Read while sending: the gateway may answer and close before the client is done.
        answer = pool.submit(read_response, sock)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            for _ in range(3 * UPLOAD_LIMIT // len(block)):
                sock.sendall(b"%x\r\n%s\r\n" % (len(block), block))
            sock.sendall(b"0\r\n\r\n")
        status, body = answer.result(timeout=20)
    assert status == 413 and json.loads(body)["error"]["code"] == "too_large"
    assert stored_files(cluster) == []


def read_response(sock: socket.socket) -> tuple[int, bytes]:
    """Status and body of one HTTP/1.1 response with a Content-Length."""
    data = b""
    while b"\r\n\r\n" not in data:
        block = sock.recv(65536)
        assert block, f"connection closed before the response headers: {data!r}"
        data += block
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    length = next(int(v) for k, v in (line.split(":", 1) for line in lines[1:]) if k.lower() == "content-length")
    while len(body) < length:
        block = sock.recv(65536)
        assert block, "connection closed inside the response body"
        body += block
    return int(lines[0].split()[1]), body


# --- auth ------------------------------------------------------------------------------------

def routes(http, blueprint: str) -> list[tuple[str, str]]:
    """(method, path) of every route of a blueprint, placeholders filled with plausible values."""
    out = []
    for rule in http.application.url_map.iter_rules():
        if rule.endpoint.startswith(blueprint + "."):
            path = rule.rule
            for arg in rule.arguments:
                path = path.replace(f"<{arg}>", {"sha": "a" * 64, "pid": NO_JOB + ":0"}.get(arg, NO_JOB))
            out += [(m, path) for m in sorted(rule.methods - {"HEAD", "OPTIONS"})]
    return out


def test_every_client_and_worker_route_wants_the_right_token(http, tokens):
    checked = 0
    for blueprint, wrong in (("client", tokens.worker), ("worker", tokens.client)):
        for method, path in routes(http, blueprint):
            with unchanged(http):
                expect_error(http.open(path, method=method), 401, "unauthorized")
                expect_error(http.open(path, method=method, headers=bearer("ff_c_unknown")), 401, "unauthorized")
                expect_error(http.open(path, method=method, headers={"Authorization": tokens.client}), 401)
                expect_error(http.open(path, method=method, headers=bearer(wrong)), 403, "forbidden")
            checked += 1
    assert checked >= 15


@pytest.mark.parametrize("method, action", [("GET", ""), ("POST", "/cancel"), ("GET", "/archive")],
                         ids=["get", "cancel", "archive"])
def test_unknown_and_other_clients_jobs_are_not_found(http, tokens, scene_sha, method, action):
    job = submit(http, tokens.client, scene_sha)
    with unchanged(http):
        for who, job_id in ((tokens.client, NO_JOB), (tokens.client2, job["id"]), (tokens.client, "../x")):
            expect_error(http.open(f"/v1/jobs/{job_id}{action}", method=method, headers=bearer(who)), 404)
    assert http.get("/v1/jobs", headers=bearer(tokens.client2)).get_json() == {"jobs": []}


def test_an_admin_sees_and_manages_every_clients_jobs(http, tokens, scene_bytes, scene_sha):
    mine = submit(http, tokens.client, scene_sha)
    theirs = submit(http, tokens.client2, upload(http, tokens.client2, scene_bytes))  # each client uploads its own
    listed = http.get("/v1/jobs", headers=bearer(tokens.admin)).get_json()["jobs"]
    assert {j["id"] for j in listed} == {mine["id"], theirs["id"]}
    assert get_job(http, tokens.admin, theirs["id"])["status"] == "queued"
    resp = http.post(f"/v1/jobs/{theirs['id']}/cancel", headers=bearer(tokens.admin))
    assert resp.status_code == 200 and resp.get_json()["status"] == "cancelled"
    assert get_job(http, tokens.client2, theirs["id"])["status"] == "cancelled"
    assert get_job(http, tokens.client, mine["id"])["status"] == "queued"


# --- never a 500 -----------------------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)


def objects_with(*names: str, **fixed) -> st.SearchStrategy:
    """Random JSON, or objects using the endpoint's own field names with random values (which reach
    deeper than random keys ever would)."""
    fields = {n: JSON | fixed.get(n, st.nothing()) for n in names}
    return JSON | st.fixed_dictionaries({}, optional=fields)


LEASE_REF = st.fixed_dictionaries({"id": st.text(max_size=20) | st.just(NO_JOB + ":0"), "token": st.text(max_size=8)})
FUZZ = {
    "jobs": objects_with("manifest", "main", "frames", "step", "chunk", "priority", "name",
                         frames=st.text(max_size=12), manifest=st.dictionaries(st.text(max_size=12), st.text())),
    "files/missing": objects_with("hashes", hashes=st.lists(st.text(max_size=70))),
    "workers": objects_with("name", "blender_version", "devices", "slots", "blender", "device",
                            blender_version=st.from_regex(r"\A\d{1,6}(\.\d{1,6}){0,3}\Z") | st.text(max_size=8)),
    "heartbeat": objects_with("parts", parts=st.lists(LEASE_REF, max_size=3)),
}  # failure reports are fuzzed against a real lease in test_api_leases.py


@pytest.mark.parametrize("target", FUZZ.keys())
def test_random_json_never_causes_a_server_error(http, tokens, target):
    wid = register_worker(http, tokens.worker)
    paths = {"jobs": ("/v1/jobs", tokens.client), "files/missing": ("/v1/files/missing", tokens.client),
             "workers": ("/v1/workers", tokens.worker), "heartbeat": (f"/v1/workers/{wid}/heartbeat", tokens.worker)}
    path, token = paths[target]

    @hsettings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(FUZZ[target])
    def post(value):
        resp = http.post(path, data=json.dumps(value), content_type="application/json", headers=bearer(token))
        assert resp.status_code < 500, (value, resp.get_data(as_text=True))
        if resp.status_code >= 400:
            expect_error(resp, resp.status_code)

    post()
    assert snapshot(farm_of(http))[1] == {}, "no object may be stored by these requests"
