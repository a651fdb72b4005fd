"""Malformed input on every route (issue 9, items 9, 10 and 11): a clear 4xx, never a 500.

A stranger controls a signed link's query string, every byte of a JSON body and every
path segment; each attack here was a 500 (an unhandled exception) and must now be refused
with the farm's error shape while Redis and storage stay exactly as they were.
"""
from __future__ import annotations

import time

import pytest

from apitools import bearer, expect_error, farm_of, unchanged
from dashtools import sign_in
from framefarm.gateway import blender_builds, results, storage
from framefarm.gateway.contract import MAX_DEPTH, Contract

# A value of each path parameter's shape, so that a request gets past the path's own checks.
PATH_VALUES = {"sha": "a" * 64, "job_id": "a" * 12, "pid": "a" * 12 + ":0", "wid": "a" * 16}


def routes(http, *methods: str) -> list[tuple[str, str, str]]:
    """(method, Flask rule, a concrete path) for each of the app's routes with one of `methods`."""
    out = []
    for rule in http.application.url_map.iter_rules():
        for method in sorted(rule.methods & set(methods)):
            path = rule.rule
            for arg in rule.arguments:
                path = path.replace(f"<{arg}>", PATH_VALUES.get(arg, "x"))
            if not path.startswith("/static/"):
                out.append((method, rule.rule, path))
    return out


@pytest.mark.parametrize("route", ["/v1/download/" + "a" * 12, "/v1/blender/" + "b" * 64])
@pytest.mark.parametrize("sig", ["%C3%A9", "%E2%9C%93" * 32, "%00", "%FF"])
def test_a_signature_with_any_characters_is_refused_403(http, route, sig):
    """compare_digest raised TypeError on a non-ASCII signature: a 500 for `?sig=%C3%A9`."""
    farm_of(http).signer.sign("warm-up", 1)  # the farm's signing key is made on first use
    with unchanged(http):
        err = expect_error(http.get(f"{route}?expires={int(time.time()) + 600}&sig={sig}"), 403, "bad_signature")
    assert "invalid or has expired" in err["message"]


def test_a_deeply_nested_json_body_is_refused_400_on_every_json_route(http, tokens):
    """50,000 nested `[` made json.loads raise RecursionError: a 500 on every JSON endpoint."""
    contract: Contract = http.application.extensions["framefarm.contract"]
    headers = {**bearer(tokens.admin), "Content-Type": "application/json",
               "X-Lease-Token": "a" * 32, "X-Worker-Id": PATH_VALUES["wid"]}
    json_routes = 0
    for body in (b"[" * 50_000, b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1), b'{"a":' * 5000 + b"1" + b"}" * 5000):
        for method, rule, path in routes(http, "POST", "PUT", "DELETE", "PATCH"):
            with unchanged(http):
                resp = http.open(path, method=method, data=body, headers=headers)
            assert resp.status_code < 500, (method, path, resp.get_data(as_text=True)[:300])
            op = contract.operation(rule, method.lower())
            if op is not None and op.body_schema is not None:
                json_routes += 1
                err = expect_error(resp, 400, "bad_request")
                assert f"nests deeper than {MAX_DEPTH} levels" in err["message"], (method, path, err)
    assert json_routes >= 3 * 8, "the spec describes the JSON bodies of at least 8 operations"


def test_a_body_nested_within_the_limit_is_read_as_usual(http, tokens):
    """The limit refuses only depth: a body nested MAX_DEPTH deep is checked against the spec as ever."""
    nested = "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1)
    resp = http.post("/v1/files/missing", data='{"hashes": %s}' % nested, headers={
        **bearer(tokens.client), "Content-Type": "application/json"})
    assert "nests" not in expect_error(resp, 400)["message"]


@pytest.mark.parametrize("body", [
    b'{"name": "shot \\ud800", "scene": "%s", "main": "scene.blend", "frames": "1-2"}',  # a lone high half
    b'{"name": "\\udfff", "scene": "%s", "main": "scene.blend", "frames": "1-2"}',  # a lone low half
    b'{"\\ud800": 1, "scene": "%s", "main": "scene.blend", "frames": "1-2"}',  # in a key
    b'{"name": "x", "scene": "%s", "main": "scene.blend", "frames": "1-2", "manifest": {"\\udc80.png": "%s"}}',
])
def test_a_lone_surrogate_anywhere_in_a_body_is_refused_400_on_every_json_route(http, tokens, body):
    """A job named "\\ud800" was a 500: json.loads takes the escape, Redis cannot store the string."""
    contract: Contract = http.application.extensions["framefarm.contract"]
    body = body.replace(b"%s", b"0" * 64)
    headers = {**bearer(tokens.admin), "Content-Type": "application/json",
               "X-Lease-Token": "a" * 32, "X-Worker-Id": PATH_VALUES["wid"]}
    for method, rule, path in routes(http, "POST", "PUT", "DELETE", "PATCH"):
        op = contract.operation(rule, method.lower())
        if op is None or op.body_schema is None:
            continue
        with unchanged(http):
            resp = http.open(path, method=method, data=body, headers=headers)
        assert "surrogate" in expect_error(resp, 400, "bad_request")["message"], (method, path)
    # A proper pair (an emoji written as two escapes) is text, and a job may be named with it.
    pair = b'{"name": "\\ud83c\\udfac"}'
    resp = http.post("/v1/jobs", data=pair, headers={**bearer(tokens.client), "Content-Type": "application/json"})
    assert "surrogate" not in expect_error(resp, 400)["message"]


def test_a_trailing_newline_in_any_path_parameter_is_refused(http, tokens):
    """`$` in Python matches before a final newline: `POST /v1/files/<sha>%0A/commit` was a 500.
    The API's routes answer its JSON error (the dashboard's pages: the test below)."""
    headers = {**bearer(tokens.admin), "X-Lease-Token": "a" * 32, "X-Worker-Id": PATH_VALUES["wid"]}
    checked = 0
    for method, rule, _ in [r for r in routes(http, "GET", "POST", "PUT", "DELETE") if r[1].startswith("/v1/")]:
        for arg in [a for a in PATH_VALUES if f"<{a}>" in rule]:
            path = rule
            for name, value in PATH_VALUES.items():
                path = path.replace(f"<{name}>", value + ("%0A" if name == arg else ""))
            with unchanged(http):
                resp = http.open(path, method=method, json={}, headers=headers)
            assert 400 <= resp.status_code < 500, (method, path, resp.get_data(as_text=True)[:300])
            expect_error(resp, resp.status_code)
            checked += 1
    assert checked >= 15


def test_a_trailing_newline_in_a_dashboard_path_is_refused(http, tokens):
    """The dashboard's pages, signed in as an admin (who may see any job): a job id with a
    trailing newline is no job, answered 4xx, never a 500."""
    sign_in(http, tokens.admin)
    checked = 0
    for method, rule, _ in [r for r in routes(http, "GET") if not r[1].startswith(("/v1/", "/dashboard/static"))]:
        if "<job_id>" not in rule:
            continue
        path = rule.replace("<job_id>", PATH_VALUES["job_id"] + "%0A").replace("<int:frame>", "1")
        with unchanged(http):
            resp = http.open(path, method=method)
        assert 400 <= resp.status_code < 500, (method, path, resp.status_code)
        checked += 1
    assert checked >= 3


def test_the_gateways_own_patterns_match_whole_values(tmp_path):
    """The checks outside the spec: a storage key, a result's frame name and a published
    Blender version with a trailing newline were taken (a file name with a newline in it)."""
    with pytest.raises(storage.StorageError):
        storage.check_key("files/" + "a" * 64 + "\n")
    assert storage.check_key("files/" + "a" * 64)
    assert results.frame_of("0001.png\n") is None and results.frame_of("0001.png") == 1
    tarball = tmp_path / "blender.tar.xz"
    tarball.write_bytes(b"not read: the version is checked first")
    with pytest.raises(ValueError, match="--version"):
        blender_builds.publish(None, None, tarball, "4.2\n")  # type: ignore[arg-type]
