"""One Redis URL for every deployment: FRAMEFARM_REDIS_URL.

redis-py's own URLs cover a single server: `redis://`, `rediss://` (TLS, e.g.
Memorystore with in-transit encryption; `?ssl_ca_certs=/path/ca.pem` names its CA) and
`unix://`. A highly available Redis is found through Sentinel, which redis-py supports
but not from a URL, so this module adds:

    redis+sentinel://[[user]:password@]host:port[,host:port...]/service[/db][?sentinel_password=...]
    rediss+sentinel://...   (TLS to the sentinels and to the master)

The password in the URL is the master's; `sentinel_password` is the sentinels' own
(when they require one). The client follows failovers: each new connection asks the
sentinels which server is the master now.
"""
from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import redis
from redis.sentinel import Sentinel

SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
_SENTINEL_OPTIONS = ("sentinel_password", "sentinel_username", "ssl_ca_certs", "ssl_cert_reqs")


class RedisURLError(ValueError):
    pass


def redis_from_url(url: str, **kwargs) -> redis.Redis:
    """A client for `url`; `kwargs` (timeouts, health checks) apply to every connection."""
    scheme = url.split("://", 1)[0].lower()
    if scheme not in SENTINEL_SCHEMES:
        return redis.Redis.from_url(url, **kwargs)
    hosts, service, db, auth, options = parse_sentinel_url(url)
    tls: dict[str, Any] = {"ssl": True} if scheme.startswith("rediss") else {}
    for name in ("ssl_ca_certs", "ssl_cert_reqs"):
        if name in options:
            tls[name] = options[name]
    sentinel_auth = {k.removeprefix("sentinel_"): options[k]
                     for k in ("sentinel_password", "sentinel_username") if k in options}
    sentinel = Sentinel(hosts, sentinel_kwargs={**kwargs, **tls, **sentinel_auth}, **tls)
    return sentinel.master_for(service, redis_class=redis.Redis, db=db, **auth, **kwargs)


def parse_sentinel_url(url: str) -> tuple[list[tuple[str, int]], str, int, dict[str, str], dict[str, str]]:
    """(sentinel addresses, service name, db, master credentials, options)."""
    parts = urlsplit(url)
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    auth: dict[str, str] = {}
    if userinfo:
        user, _, password = userinfo.partition(":")
        if user:
            auth["username"] = unquote(user)
        if password:
            auth["password"] = unquote(password)
    hosts = [_host_port(h, url) for h in hostlist.split(",") if h]
    path = [p for p in parts.path.split("/") if p]
    if not hosts or not 1 <= len(path) <= 2:
        raise RedisURLError(f"a Sentinel URL looks like redis+sentinel://host:26379[,host:26379]/service[/db], "
                            f"not {redact(url)}")
    try:
        db = int(path[1]) if len(path) == 2 else 0
    except ValueError:
        raise RedisURLError(f"the database in {redact(url)} must be a number") from None
    options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    unknown = set(options) - set(_SENTINEL_OPTIONS)
    if unknown:
        raise RedisURLError(f"unknown option(s) {sorted(unknown)} in a Sentinel URL; known: {_SENTINEL_OPTIONS}")
    return hosts, unquote(path[0]), db, auth, options


def _host_port(text: str, url: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":") if not text.endswith("]") else (text, "", "")
    if not sep:
        host, port = text, "26379"
    try:
        return host.strip("[]"), int(port)
    except ValueError:
        raise RedisURLError(f"bad sentinel address {text!r} in {redact(url)}") from None


def redact(url: str) -> str:
    """Never echo a password in an error message."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.rpartition('@')[2]}" if "@" in rest else url
