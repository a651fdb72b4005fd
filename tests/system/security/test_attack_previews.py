"""A hostile client against the previews (issue 12): another client's job, frame numbers that
are not frames, and signed preview links tampered with, moved to another frame or job, or
expired. Each is a clear 4xx that changes nothing, never a 500.
"""
from __future__ import annotations

import time
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from apitools import (bearer, claim, expect_error, farm_of, put_result, register_worker, scene_bytes, scene_sha,
                      submit, unchanged)
from farmtools import zip_bytes
from framefarm.gateway import previews

__all__ = ["scene_bytes", "scene_sha"]  # fixtures, imported for pytest

JPEG = b"\xff\xd8\xff\xe0" + b"\0" * 60 + b"\xff\xd9"


@pytest.fixture
def job(http, tokens, scene_sha):
    """A client's job of two frames, both rendered, both with a preview."""
    job = submit(http, tokens.client, scene_sha, frames="1-2", chunk=2)
    part = claim(http, tokens.worker, register_worker(http, tokens.worker))
    files = {"0001.png": b"1", "0002.png": b"2", "_meta/previews/1.jpg": JPEG, "_meta/previews/2.jpg": JPEG}
    assert put_result(http, tokens.worker, part, zip_bytes(files)).status_code == 200
    return job


def test_another_clients_job_is_not_found_and_a_worker_token_is_refused(http, tokens, job):
    for path in (f"/v1/jobs/{job['id']}/previews", f"/v1/jobs/{job['id']}/previews/1"):
        with unchanged(http):
            expect_error(http.get(path, headers=bearer(tokens.client2)), 404, "not_found")
            expect_error(http.get(path, headers=bearer(tokens.worker)), 403)
            expect_error(http.get(path), 401)
        assert http.get(path, headers=bearer(tokens.client)).status_code == 200


@pytest.mark.parametrize("frame", ["abc", "-1", "1.5", "1e3", "99999999999999999999999", "1048575", "%00", "0x1"])
def test_a_frame_that_is_not_a_frame_number_is_refused_400(http, tokens, job, frame):
    with unchanged(http):
        err = expect_error(http.get(f"/v1/jobs/{job['id']}/previews/{frame}", headers=bearer(tokens.client)),
                           400, "bad_frame")
        assert "whole number from 0 to 1048574" in err["message"]
        expect_error(http.get(f"/v1/preview/{job['id']}/{frame}?expires=1&sig=x"), 400, "bad_frame")


def _link(http, job_id: str, frame: int) -> str:
    with http.application.app_context():
        return previews.signed_link(farm_of(http), job_id, frame).removeprefix(farm_of(http).settings.link_base)


def _with(link: str, **changes: str) -> str:
    url = urlsplit(link)
    query = {k: v[0] for k, v in parse_qs(url.query).items()} | changes
    return f"{url.path}?{urlencode(query)}"


def test_a_signed_preview_link_opens_its_frame_only(http, tokens, job, scene_sha):
    link = _link(http, job["id"], 1)
    assert http.get(link).data == JPEG
    other = submit(http, tokens.admin, scene_sha, frames="1-2")  # an admin may submit any stored file
    sig = parse_qs(urlsplit(link).query)["sig"][0]
    forged = [
        _with(link, sig=sig[:-1] + ("0" if sig[-1] != "0" else "1")),  # tampered
        _with(link, expires=str(int(time.time()) + 10 ** 6)),  # a later expiry under the same signature
        _with(link.replace(f"/{job['id']}/1?", f"/{job['id']}/2?")),  # another frame
        _with(link.replace(f"/{job['id']}/", f"/{other['id']}/")),  # another (client's) job
        _with(link, sig=""), link.split("?")[0],  # no signature at all
    ]
    expires, old_sig = farm_of(http).signer.sign(previews.subject(job["id"], 1), -10)
    forged.append(f"/v1/preview/{job['id']}/1?expires={expires}&sig={old_sig}")  # expired
    for url in forged:
        with unchanged(http):
            resp = http.get(url)
        assert resp.status_code in (400, 403), (url, resp.status_code, resp.get_data(as_text=True)[:300])
        assert resp.get_json()["error"]["code"] in ("bad_signature", "bad_request"), url
    err = expect_error(http.get(forged[-1]), 403, "bad_signature")
    assert "invalid or has expired" in err["message"]


def test_a_signed_link_to_a_frame_without_a_preview_is_404(http, job):
    expect_error(http.get(_link(http, job["id"], 7)), 404, "no_preview")
