"""Bearer tokens with roles, stored hashed in Redis.

A token is shown once when created; Redis keeps only its SHA-256, so a leaked
database dump does not leak working tokens. Clients own the jobs they submit:
the owner is derived from the token's digest, so one client never sees another's.
"""
from __future__ import annotations

import functools
import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Callable, cast

import redis
from flask import g, request

from . import keys
from .errors import ApiError

ROLES = ("client", "worker", "admin")
_IDENTITY = "framefarm.identity"  # where a request keeps the identity its token gave
TOKENS = "framefarm.tokens"  # the app's TokenCache (app.extensions)


@dataclass(frozen=True)
class Identity:
    role: str
    owner: str
    name: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(r: redis.Redis, role: str, name: str = "") -> str:
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    token = f"ff_{role[0]}_{secrets.token_urlsafe(32)}"
    d = digest(token)
    r.hset(keys.token(d), mapping={"role": role, "name": name or f"{role}-{d[:8]}",
                                   "created_at": int(time.time())})
    return token


def revoke_token(r: redis.Redis, token: str) -> bool:
    return bool(r.delete(keys.token(digest(token))))


def _digest_of(header: str | None) -> str:
    if not header or not header.startswith("Bearer "):
        raise ApiError(401, "unauthorized", "missing token: send 'Authorization: Bearer <token>'")
    return digest(header[len("Bearer "):].strip())


def _lookup(r: redis.Redis, d: str) -> Identity:
    role, name = r.hmget(keys.token(d), "role", "name")
    if role is None:
        raise ApiError(401, "unauthorized", "unknown token")
    return Identity(cast(str, role), d[:20], cast(str, name or ""))  # the farm's client decodes


def authenticate(r: redis.Redis, header: str | None) -> Identity:
    return _lookup(r, _digest_of(header))


class TokenCache:
    """The identities of tokens this process found in Redis within the last `ttl_s` seconds.

    A worker sends its token with every claim, heartbeat and result; looking it up each time
    was one of a claim+complete cycle's Redis round trips. Only tokens Redis knew are kept
    (an unknown token is looked up every time, so guessing gains nothing and a new token works
    at once), each for `ttl_s` from its lookup, never renewed by use: a token revoked or
    deleted in Redis (`framefarm-gateway token revoke`) is refused by this process at most
    `ttl_s` later (FRAMEFARM_TOKEN_CACHE_S). At most `max_entries` are kept; past that the
    expired go, and if none had, all do (a flood of valid tokens costs lookups, not memory)."""

    def __init__(self, ttl_s: float, max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s, self.max_entries, self.clock = ttl_s, max_entries, clock
        # Plain dict operations, atomic under the GIL: gevent's greenlets and gthread's threads share it.
        self._known: dict[str, tuple[float, Identity]] = {}

    def authenticate(self, r: redis.Redis, header: str | None) -> Identity:
        d = _digest_of(header)
        now = self.clock()
        hit = self._known.get(d)
        if hit is not None and now < hit[0]:
            return hit[1]
        ident = _lookup(r, d)  # 401 for an unknown token, which is never kept
        if self.ttl_s > 0:
            if len(self._known) >= self.max_entries:
                for key, (until, _) in list(self._known.items()):
                    if until <= now:
                        self._known.pop(key, None)
                if len(self._known) >= self.max_entries:
                    self._known.clear()
            self._known[d] = (now + self.ttl_s, ident)
        return ident


def authorize(roles: tuple[str, ...]) -> Identity:
    """The request's identity, if its token has one of `roles` (admins pass every role check).
    The request's checks (contract.py) authorise it before its view does: the token is looked
    up and the request counted against its rate limit only the first time."""
    from flask import current_app

    # Kept in the request's own environ, not in `g`: `g` belongs to the app context, which a
    # request shares with whatever pushed one before it (a test's client, a CLI command), and
    # an identity found for an earlier request must never answer for this one.
    known: Identity | None = request.environ.get(_IDENTITY)
    ident = known or current_app.extensions[TOKENS].authenticate(current_app.extensions["framefarm"].redis,
                                                                  request.headers.get("Authorization"))
    g.identity = ident
    if ident.role not in roles and not ident.is_admin:
        raise ApiError(403, "forbidden",
                       f"a {ident.role} token cannot do this; it needs a {' or '.join(roles)} token")
    if known is None:
        request.environ[_IDENTITY] = ident
        from .quotas import count_request  # quotas needs this module's Identity

        count_request(current_app.extensions["framefarm"], ident)
    return ident


def requires(*roles: str):
    """Views decorated with this see `g.identity`; `view.roles` tells the request checks
    (contract.py) whom the view is for, so a malformed request is answered 401/403 first."""

    def wrap(view):
        @functools.wraps(view)
        def inner(*args, **kwargs):
            authorize(roles)
            return view(*args, **kwargs)

        setattr(inner, "roles", roles)
        return inner

    return wrap
