"""Signing in to the dashboard: a client or admin token exchanged for a session cookie.

The token is posted once, in a form body (never in a URL), checked like an API token, and
never stored or shown: the cookie holds the token's SHA-256 (the key of its record in
Redis), an expiry and an HMAC of both made with the farm's secret (signing.py), so every
gateway accepts it and nobody can forge one. Each request looks the token's record up
again, so a revoked token ends its sessions at once.

The cookie is HttpOnly, SameSite=Strict and Secure when the page came over HTTPS. Every
state-changing request (a POST) must also carry the session's CSRF token (derived from the
cookie's signature, shown in the page for its forms and scripts) and, when the browser
sends one, an Origin of this gateway: a cross-site POST is refused with 403 even by a
browser that would send the cookie.
"""
from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import cast

from flask import Request
from werkzeug.wrappers import Response

from .. import auth, keys
from ..errors import ApiError
from ..farm import Farm

COOKIE = "ff_session"
SESSION_S = 12 * 3600  # a working day; sign in again after it
ROLES = ("client", "admin")  # a worker token has no dashboard


@dataclass(frozen=True)
class Session:
    identity: auth.Identity
    csrf: str


def sign_in(farm: Farm, token: str) -> tuple[auth.Identity, str]:
    """The identity of a client or admin token and the cookie value of its new session;
    401 for a token the farm does not know, 403 for a worker's."""
    ident = auth.authenticate(farm.redis, f"Bearer {token.strip()}")
    if ident.role not in ROLES:
        raise ApiError(403, "forbidden", f"a {ident.role} token cannot sign in to the dashboard; "
                       "use a client or admin token")
    digest = auth.digest(token.strip())
    expires, sig = farm.signer.sign(_subject(digest), SESSION_S)
    return ident, f"{digest}.{expires}.{sig}"


def _subject(digest: str) -> str:
    return f"dashboard-session:{digest}"


def current(farm: Farm, req: Request) -> Session | None:
    """The request's session, if its cookie is genuine, unexpired and its token still valid."""
    digest, _, rest = (req.cookies.get(COOKIE) or "").partition(".")
    expires, _, sig = rest.partition(".")
    if not digest or not farm.signer.verify(_subject(digest), expires, sig):
        return None
    role, name = cast(list[str | None], farm.redis.hmget(keys.token(digest), "role", "name"))
    if role not in ROLES:
        return None
    return Session(auth.Identity(role, digest[:20], name or ""), _csrf(sig))


def _csrf(sig: str) -> str:
    # Only someone who can read the cookie (HttpOnly: not even this page's scripts) or the
    # page can know it; the page is never readable cross-site.
    return hashlib.sha256(f"csrf:{sig}".encode()).hexdigest()


def check_post(req: Request, session: Session | None) -> None:
    """403 for a POST from another site: a foreign Origin, or (with a session) no or a wrong
    CSRF token, in the form's `csrf` field or the X-CSRF-Token header."""
    origin = req.headers.get("Origin")
    if origin is not None and origin.rstrip("/") != req.host_url.rstrip("/"):
        raise ApiError(403, "cross_site", "this request came from another site and was refused")
    if session is None:
        return
    sent = req.headers.get("X-CSRF-Token") or req.form.get("csrf") or ""
    if not hmac.compare_digest(sent.encode(), session.csrf.encode()):
        raise ApiError(403, "cross_site", "this form is stale or came from another site: reload the page")


def set_cookie(resp: Response, value: str, secure: bool) -> None:
    resp.set_cookie(COOKIE, value, max_age=SESSION_S, httponly=True, secure=secure, samesite="Strict", path="/")


def clear_cookie(resp: Response, secure: bool) -> None:
    resp.delete_cookie(COOKIE, httponly=True, secure=secure, samesite="Strict", path="/")
