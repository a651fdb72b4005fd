"""Signed, expiring links, so a download needs no token and no public bucket.

The HMAC secret is created once in Redis (SET NX), so every gateway of a cluster
signs and verifies with the same key without any of them being configured with it.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
import time

import redis

from . import keys


class Signer:
    def __init__(self, r: redis.Redis) -> None:
        self._r = r
        self._key: bytes | None = None

    def secret(self) -> bytes:
        """The farm's secret, from which other keys are derived (webhooks.owner_key)."""
        if self._key is None:
            self._r.set(keys.SECRET, secrets.token_hex(32), nx=True)
            self._key = str(self._r.get(keys.SECRET)).encode()  # the farm's client answers text
        return self._key

    def sign(self, subject: str, ttl_s: int) -> tuple[int, str]:
        expires = int(time.time()) + ttl_s
        return expires, self._mac(subject, expires)

    def verify(self, subject: str, expires: str | None, sig: str | None) -> bool:
        try:
            exp = int(expires or "")
        except ValueError:  # no `expires`, or not a number
            return False
        # As bytes: compare_digest refuses str with non-ASCII characters (a TypeError, so a 500),
        # and a signature is whatever a stranger put in the link's query string.
        return exp >= time.time() and hmac.compare_digest(self._mac(subject, exp).encode(), (sig or "").encode())

    def _mac(self, subject: str, expires: int) -> str:
        return hmac.new(self.secret(), f"{subject}\n{expires}".encode(), hashlib.sha256).hexdigest()
