"""The live gateway list: each gateway announces itself; silence makes it vanish.

There is no special cleaner node (the seed had one): any gateway listing the
entries drops those older than the timeout, measured on Redis's clock.
"""
from __future__ import annotations

import redis

from . import keys


def redis_now_ms(r: redis.Redis) -> int:
    secs, micros = r.time()
    return secs * 1000 + micros // 1000


def announce(r: redis.Redis, url: str) -> None:
    r.zadd(keys.GATEWAYS, {url: redis_now_ms(r)})


def live(r: redis.Redis, timeout_s: float) -> list[dict]:
    now = redis_now_ms(r)
    cutoff = now - int(timeout_s * 1000)
    pipe = r.pipeline()
    pipe.zremrangebyscore(keys.GATEWAYS, "-inf", f"({cutoff}")
    pipe.zrange(keys.GATEWAYS, 0, -1, withscores=True)
    _, entries = pipe.execute()
    return [{"url": url, "last_seen": int(ts)} for url, ts in entries]
