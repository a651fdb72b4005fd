"""Helpers for the tests of a job's actions and of the dashboard (Flask's test client)."""
from __future__ import annotations

import re

from apitools import bearer

XSS = "<img src=x onerror=alert(1)>"  # a name no page may hold as markup


def act(http, token: str, job_id: str, action: str, **body):
    """POST /v1/jobs/{id}/<action> (pause, resume, retry, priority, cancel) as `token`."""
    return http.post(f"/v1/jobs/{job_id}/{action}", json=body or None, headers=bearer(token))


def ok(resp) -> dict:
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()


def sign_in(http, token: str):
    resp = http.post("/signin", data={"token": token})
    assert resp.status_code == 303, resp.get_data(as_text=True)
    return resp


def csrf_of(http) -> str:
    """The session's CSRF token, as the page gives it to its forms and script."""
    page = http.get("/").get_data(as_text=True)
    return re.search(r'<meta name="csrf-token" content="([0-9a-f]+)">', page)[1]
