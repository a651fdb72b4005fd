"""The dashboard over HTTP (Flask's test client on a real Redis): sign-in and its cookie, the
refusals a hostile page or client would meet, escaping, the first page's size, previews read
from a part's stored result. The same pages in a real browser, on a live farm:
test_dashboard.py.
"""
from __future__ import annotations

import dataclasses
import re
import zipfile

import pytest

from apitools import (bearer, claim, farm_of, put_result, register_worker, scene_bytes, scene_sha, submit, upload)
from farmtools import wait_for, zip_bytes
from framefarm.gateway import archive, auth, keys
from framefarm.gateway.app import create_app
from framefarm.gateway.dashboard import session

__all__ = ["scene_bytes", "scene_sha"]  # fixtures, imported for pytest

XSS = "<img src=x onerror=alert(1)>"
JPEG = b"\xff\xd8\xff\xe0" + b"\0" * 60 + b"\xff\xd9"  # what the check here looks at: the magic


def sign_in(http, token: str):
    resp = http.post("/signin", data={"token": token})
    assert resp.status_code == 303, resp.get_data(as_text=True)
    return resp


def csrf_of(http) -> str:
    page = http.get("/").get_data(as_text=True)
    return re.search(r'<meta name="csrf-token" content="([0-9a-f]+)">', page)[1]


def test_signing_in_sets_a_strict_httponly_cookie_that_holds_no_token(http, tokens):
    assert http.get("/").status_code == 303 and http.get("/").headers["Location"].endswith("/signin")
    cookie = sign_in(http, tokens.client).headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie  # plain http here
    assert tokens.client not in cookie
    page = http.get("/")
    assert page.status_code == 200 and tokens.client not in page.get_data(as_text=True)
    secure = http.post("/signin", data={"token": tokens.client}, base_url="https://farm.example")
    assert "Secure" in secure.headers["Set-Cookie"]


def test_a_worker_token_or_an_unknown_one_cannot_sign_in(http, tokens):
    for token, status in ((tokens.worker, 403), ("ff_c_nope", 401), ("", 401)):
        resp = http.post("/signin", data={"token": token})
        assert resp.status_code == status and "Set-Cookie" not in resp.headers
        assert resp.mimetype == "text/html"


def test_a_forged_or_revoked_session_is_no_session(http, tokens, redis_client):
    value = session.sign_in(farm_of(http), tokens.client)[1]
    digest, expires, sig = value.split(".")
    for forged in (f"{digest}.{int(expires) + 100}.{sig}", f"{auth.digest(tokens.admin)}.{expires}.{sig}", "x.y.z"):
        http.set_cookie(session.COOKIE, forged)
        assert http.get("/").status_code == 303, forged
    http.set_cookie(session.COOKIE, value)
    assert http.get("/").status_code == 200
    auth.revoke_token(redis_client, tokens.client)
    assert http.get("/").status_code == 303, "a revoked token ends its sessions"


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


def test_a_job_named_like_markup_renders_as_text(http, tokens, scene_sha):
    job = submit(http, tokens.client, scene_sha, name=XSS)
    farm = farm_of(http)
    wid = register_worker(http, tokens.worker)
    part = claim(http, tokens.worker, wid)
    http.post(f"/v1/parts/{part['id']}/failure", headers={**bearer(tokens.worker), "X-Lease-Token": part["token"],
                                                          "X-Worker-Id": wid},
              json={"message": f"Blender said {XSS}", "log_tail": "</pre><script>alert(2)</script>"})
    sign_in(http, tokens.client)
    for path in ("/", f"/jobs/{job['id']}"):
        html = http.get(path).get_data(as_text=True)
        assert XSS not in html and "<script>alert" not in html
        assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "&lt;/pre&gt;&lt;script&gt;alert(2)&lt;/script&gt;" in http.get(f"/jobs/{job['id']}").get_data(as_text=True)
    assert farm.redis.hget(keys.job(job["id"]), "name") == XSS  # kept as sent; escaped where shown


def test_a_client_sees_neither_another_clients_job_nor_an_admin_page(http, tokens, scene_sha, scene_bytes):
    mine = submit(http, tokens.client, scene_sha, name="mine")
    upload(http, tokens.client2, scene_bytes)
    theirs = submit(http, tokens.client2, scene_sha, name="theirs")
    sign_in(http, tokens.client)
    listing = http.get("/").get_data(as_text=True)
    assert "mine" in listing and "theirs" not in listing
    assert http.get(f"/jobs/{theirs['id']}").status_code == 404
    assert http.get(f"/jobs/{mine['id']}").status_code == 200
    csrf = csrf_of(http)
    assert http.post(f"/jobs/{theirs['id']}/cancel", data={"csrf": csrf}).status_code == 404
    assert http.get(f"/jobs/{theirs['id']}/previews/1.jpg?part=0").status_code == 404
    assert http.get("/workers").status_code == 404
    wid = register_worker(http, tokens.worker)
    assert http.post(f"/workers/{wid}/drain", data={"csrf": csrf}).status_code == 404
    assert not farm_of(http).redis.hexists(keys.worker(wid), "drained")
    assert farm_of(http).redis.hget(keys.job(theirs["id"]), "status") == "queued"


def test_a_cross_site_post_is_refused(http, tokens, scene_sha):
    job = submit(http, tokens.client, scene_sha)
    sign_in(http, tokens.client)
    csrf = csrf_of(http)
    for data, headers in (({}, {}), ({"csrf": "0" * 64}, {}),
                          ({"csrf": csrf}, {"Origin": "https://evil.example"})):
        resp = http.post(f"/jobs/{job['id']}/cancel", data=data, headers=headers)
        assert resp.status_code == 403, (data, headers)
    assert farm_of(http).redis.hget(keys.job(job["id"]), "status") == "queued"
    resp = http.post(f"/jobs/{job['id']}/cancel", data={"csrf": csrf}, headers={"Origin": "http://localhost"})
    assert resp.status_code == 303
    assert farm_of(http).redis.hget(keys.job(job["id"]), "status") == "cancelled"


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
