"""Workers: registration, presence (heartbeats), who is live and able, and blocklists.

A worker registers once and is then known by its id until it is silent for
`worker_timeout_s` (its Redis hash expires; heartbeats and claims renew it, and so does
the gateway while a claim of it waits on an open connection: WaitingClaims). A worker
that keeps failing one job is put on that job's blocklist (lua/fail.lua) and is never
handed its parts again.
"""
from __future__ import annotations

import contextlib
import itertools
import secrets
import threading
from dataclasses import dataclass
from typing import Iterator, cast

from flask import g, has_request_context

from . import keys, longpoll, quotas
from .errors import ApiError
from .farm import Farm
from .gateways import redis_now_ms


@dataclass(frozen=True)
class Registration:
    """What a worker says about itself when it registers."""

    name: str | None  # None: the worker is named by its id
    blender_version: int
    blender: str
    device: str
    devices: list[str]
    slots: int
    owner: str
    sandbox: str = "unknown"  # how its Blender runs: 'bwrap' or 'off' ('unknown': a worker too old to say)
    capabilities: tuple[str, ...] = ()  # the finishing kinds it runs (finishing.py): 'encode', 'merge'


def register(farm: Farm, reg: Registration) -> str:
    """Record a new worker; returns its id (429 past the token's limit on live workers)."""
    wid = "w-" + secrets.token_hex(6)
    quotas.admit_worker(farm, reg.owner, wid)
    now = redis_now_ms(farm.redis)
    pipe = farm.redis.pipeline()
    pipe.hset(keys.worker(wid), mapping={
        "name": wid if reg.name is None else reg.name, "blender_version": reg.blender_version, "blender": reg.blender,
        "device": reg.device, "devices": ",".join(reg.devices)[:200], "slots": reg.slots, "owner": reg.owner,
        "sandbox": reg.sandbox, "capabilities": ",".join(reg.capabilities),
        "last_seen": now})
    pipe.expire(keys.worker(wid), int(farm.settings.worker_timeout_s))
    pipe.zadd(keys.WORKERS, {wid: now})
    pipe.execute()
    return wid


def unknown(wid: str) -> ApiError:
    return ApiError(404, "unknown_worker", f"worker {wid} is not registered (or expired): register again")


def not_yours(wid: str) -> ApiError:
    return ApiError(403, "not_your_worker", f"worker {wid} was registered with another token")


def load(farm: Farm, wid: str, owner: str) -> dict[str, str]:
    """The worker's fields, if it is registered under this owner's token: 404 when it is not
    registered, 403 when another token registered it (a worker id is no credential by itself)."""
    return owned(wid, cast(dict[str, str], farm.redis.hgetall(keys.worker(wid))), owner)


def owned(wid: str, fields: dict[str, str], owner: str) -> dict[str, str]:
    """`fields`, read from worker `wid`'s record, if `owner`'s token registered it; else 404 or 403."""
    if not fields:
        raise unknown(wid)
    if fields.get("owner") != owner:
        raise not_yours(wid)
    return fields


def unregister(farm: Farm, wid: str) -> None:
    pipe = farm.redis.pipeline()
    pipe.zrem(keys.WORKERS, wid)
    pipe.delete(keys.worker(wid))
    pipe.execute()


def heartbeat(farm: Farm, wid: str, held: list[tuple[str, str]]) -> list[str]:
    """Renew the worker's presence and the leases (part id, token) it still rightfully
    holds; returns the parts it must abandon (cancelled, failed or reassigned)."""
    s = farm.settings
    args: list[str | int] = [wid, farm.ms(s.lease_s), int(s.worker_timeout_s)]
    for pid, token in held:
        args += [pid, token]
    res = farm.scripts.heartbeat(args=args)
    if res[0] == "unknown_worker":
        raise unknown(wid)
    return list(res[1:])


def live(farm: Farm) -> list[dict[str, str]]:
    """Registered workers heard from recently, read once per request (kept on flask.g): a job
    list asks twice per job why it waits, and one worker token registers thousands of workers
    in seconds (2,000 made a list of 30 jobs take 20 s when each job read them all anew)."""
    if has_request_context() and "live_workers" in g:
        return g.live_workers
    cutoff = redis_now_ms(farm.redis) - farm.ms(farm.settings.worker_timeout_s)
    ids = cast(list[str], farm.redis.zrangebyscore(keys.WORKERS, cutoff, "+inf"))
    pipe = farm.redis.pipeline()
    for wid in ids:
        pipe.hgetall(keys.worker(wid))
    found = [{"id": wid, **w} for wid, w in zip(ids, pipe.execute()) if w]
    if has_request_context():
        g.live_workers = found
    return found


def blocked(farm: Farm, job_id: str) -> set[str]:
    """The workers kept away from a job (they failed it `block_after` times)."""
    return cast(set[str], farm.redis.smembers(keys.blocklist(job_id)))


def capable(farm: Farm, min_version: int, job_id: str | None = None) -> list[dict[str, str]]:
    """Live workers whose Blender opens `min_version` scenes (and, given a job, not kept away from it)."""
    workers = [w for w in live(farm) if int(w.get("blender_version", 0)) >= min_version]
    if job_id and workers:
        kept_away = blocked(farm, job_id)
        workers = [w for w in workers if w["id"] not in kept_away]
    return workers


# Renewals of the workers whose claims wait, per worker_timeout_s: a worker whose connection
# closed is let go within one worker timeout (and no sooner than half of one).
RENEWALS_PER_TIMEOUT = 2


class WaitingClaims:
    """The claims one gateway process holds waiting, and their workers' presence.

    A claim waits up to claim_wait_s (minutes), and an idle worker sends nothing else in that
    time. While a claim waits on an open connection its worker is present: `renew` (the
    process's background loop, every `renew_s`) renews all of them in one Redis call, and
    leaves out those whose connection has closed (a worker whose process ended), which drop
    out of the live workers within one worker timeout. Checking a connection is a peek at its
    socket, so between its start and its end a waiting claim costs the gateway next to nothing."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[int, tuple[str, dict]] = {}
        self._ids = itertools.count()

    @contextlib.contextmanager
    def holding(self, wid: str, environ: dict) -> Iterator[None]:
        """A claim of worker `wid` waits on the request whose WSGI environ is `environ`."""
        key = next(self._ids)
        with self._lock:
            self._waiting[key] = (wid, environ)
        try:
            yield
        finally:
            with self._lock:
                del self._waiting[key]

    def renew(self, farm: Farm) -> int:
        """Renew the presence of every worker with a claim waiting on an open connection;
        returns how many were renewed."""
        with self._lock:
            waiting = list(self._waiting.values())
        present = sorted({wid for wid, environ in waiting if not longpoll.client_gone(environ)})
        if not present:
            return 0
        return int(farm.scripts.presence(args=[int(farm.settings.worker_timeout_s), *present]))


def renew_s(farm: Farm) -> float:
    """How often a gateway process renews the workers whose claims it holds."""
    return farm.settings.worker_timeout_s / RENEWALS_PER_TIMEOUT
