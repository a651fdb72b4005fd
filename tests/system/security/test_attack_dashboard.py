"""Attacks on the dashboard (backend/framefarm/gateway/dashboard/) over HTTP: forged sessions,
a worker token signing in, markup in names and logs, another client's jobs and the admin's
pages, a cross-site POST. The same attacks in a real browser: tests/system/test_dashboard.py."""
from __future__ import annotations

from apitools import bearer, claim, farm_of, register_worker, scene_bytes, scene_sha, submit, upload
from dashtools import XSS, csrf_of, sign_in
from framefarm.gateway import auth, keys
from framefarm.gateway.dashboard import session

__all__ = ["scene_bytes", "scene_sha"]  # fixtures, imported for pytest


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
