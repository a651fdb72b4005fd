"""The dashboard over HTTP (Flask's test client on a real Redis): sign-in and its cookie, the
pages' CSP and size, actions, previews read from a part's stored result and kept after the
assembly, the live long-polls. Attacks: security/test_attack_dashboard.py; the same pages in a
real browser, on a live farm: test_dashboard.py.
"""
from __future__ import annotations

import dataclasses
import re
import zipfile

import pytest

from apitools import claim, farm_of, put_result, register_worker, scene_bytes, scene_sha, submit, upload
from dashtools import XSS, csrf_of, sign_in
from farmtools import wait_for, zip_bytes
from framefarm.gateway import archive, keys
from framefarm.gateway.app import create_app

__all__ = ["scene_bytes", "scene_sha"]  # fixtures, imported for pytest

JPEG = b"\xff\xd8\xff\xe0" + b"\0" * 60 + b"\xff\xd9"  # what the check here looks at: the magic


def test_signing_in_sets_a_strict_httponly_cookie_that_holds_no_token(http, tokens):
    assert http.get("/").status_code == 303 and http.get("/").headers["Location"].endswith("/signin")
    cookie = sign_in(http, tokens.client).headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie  # plain http here
    assert tokens.client not in cookie
    page = http.get("/")
    assert page.status_code == 200 and tokens.client not in page.get_data(as_text=True)
    secure = http.post("/signin", data={"token": tokens.client}, base_url="https://farm.example")
    assert "Secure" in secure.headers["Set-Cookie"]


def test_every_page_has_a_csp_without_inline_scripts_and_no_inline_script(http, tokens, scene_sha):
    job = submit(http, tokens.client, scene_sha)
    sign_in(http, tokens.admin)
    for path in ("/", f"/jobs/{job['id']}", "/workers", "/signin"):
        resp = http.get(path)
        assert resp.status_code == 200, path
        csp = resp.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
        html = resp.get_data(as_text=True)
        assert not re.search(r"<script(?![^>]*\bsrc=)", html), f"an inline script in {path}"
        assert not re.search(r"\son[a-z]+=", html.replace(XSS, "")), f"an inline handler in {path}"
        assert "http://" not in html and "https://" not in html, "nothing from another host"


def test_the_first_page_with_its_script_and_style_is_under_200_kb(http, tokens, scene_sha):
    for _ in range(30):
        submit(http, tokens.client, scene_sha, name="a long enough job name " * 4)
    sign_in(http, tokens.client)
    page = http.get("/").data
    assets = re.findall(r'(?:src|href)="(/dashboard/static/[^"]+)"', page.decode())
    assert len(assets) == 2
    total = len(page) + sum(len(http.get(a).data) for a in assets)
    assert total < 200 * 1024, total


@pytest.mark.parametrize("action, field, value", [
    ("pause", "paused", "1"), ("priority", "priority", "7"),
])
def test_the_job_page_acts_like_the_api(http, tokens, scene_sha, action, field, value):
    job = submit(http, tokens.client, scene_sha)
    sign_in(http, tokens.client)
    resp = http.post(f"/jobs/{job['id']}/{action}", data={"csrf": csrf_of(http), "priority": "7"})
    assert resp.status_code == 303
    assert farm_of(http).redis.hget(keys.job(job["id"]), field) == value
    refused = http.post(f"/jobs/{job['id']}/priority", data={"csrf": csrf_of(http), "priority": "1000"})
    assert refused.status_code == 422 and "FRAMEFARM_CLIENT_PRIORITY_MIN/MAX" in refused.get_data(as_text=True)


def test_a_preview_is_served_from_the_parts_stored_result(http, tokens, scene_sha):
    job = submit(http, tokens.client, scene_sha, frames="1-2", chunk=2)
    wid = register_worker(http, tokens.worker)
    part = claim(http, tokens.worker, wid)
    stats = b'{"frames": [{"frame": 1, "seconds": 2.5, "peak_rss_bytes": 1}, {"frame": 2, "seconds": 5.0}]}'
    data = zip_bytes({"0001.png": b"frame 1", "0002.png": b"frame 2", "_meta/previews/1.jpg": JPEG,
                      "_meta/previews/2.jpg": b"not a jpeg", "_meta/stats.json": stats})
    assert put_result(http, tokens.worker, part, data).status_code == 200
    sign_in(http, tokens.client)
    resp = http.get(f"/jobs/{job['id']}/previews/1.jpg?part=0")
    assert resp.status_code == 200 and resp.mimetype == "image/jpeg" and resp.data == JPEG
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert http.get(f"/jobs/{job['id']}/previews/2.jpg?part=0").status_code == 404, "not a JPEG: not served"
    assert http.get(f"/jobs/{job['id']}/previews/1.jpg?part=1").status_code == 404
    page = http.get(f"/jobs/{job['id']}").get_data(as_text=True)
    assert 'id="last-frame"' in page and "frame 1: 2.50 s" in page and "frame 2: 5.00 s" in page
    # Assembled: the part results are gone, the job keeps its previews and times beside its zip.
    farm = farm_of(http)
    wait_for(lambda: archive.assemble_pending(farm) or get_status(farm, job["id"]) == "done", 10, "the assembly")
    assert not list(farm.storage.root.glob("parts/**/*.zip"))
    assert http.get(f"/jobs/{job['id']}/previews/1.jpg").data == JPEG
    page = http.get(f"/jobs/{job['id']}").get_data(as_text=True)
    assert 'id="last-frame"' in page and "frame 2: 5.00 s" in page and 'id="download"' in page
    with zipfile.ZipFile(farm.storage.root / keys.archive(job["id"])) as zf:
        assert sorted(zf.namelist()) == ["0001.png", "0002.png"], "the artist's zip holds frames only"


def get_status(farm, job_id: str) -> str:
    return farm.redis.hget(keys.job(job_id), "status")


def test_the_live_answers_wait_for_a_change_and_need_a_session(settings, tokens, scene_bytes):
    http = create_app(dataclasses.replace(settings, job_wait_max_s=0.3)).test_client()  # short waits
    job = submit(http, tokens.client, upload(http, tokens.client, scene_bytes))
    assert http.get(f"/live/jobs/{job['id']}?rev=0").status_code == 401
    sign_in(http, tokens.client)
    rev = farm_of(http).redis.hget(keys.job(job["id"]), "rev")
    assert http.get(f"/live/jobs/{job['id']}?rev=-5").status_code == 200, "a stale revision answers at once"
    assert http.get(f"/live/jobs/{job['id']}?rev={rev}").status_code == 204, "no change: nothing after the wait"
    rows = http.get("/live/jobs?fp=stale")
    assert rows.status_code == 200 and job["id"] in rows.get_data(as_text=True)
    fp = re.search(r'data-fp="([0-9a-f]+)"', rows.get_data(as_text=True))[1]
    assert http.get(f"/live/jobs?fp={fp}").status_code == 204
