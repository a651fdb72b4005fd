"""Webhooks: the farm POSTs to a URL when a job ends (done, failed or cancelled).

Targets are a job's own (`notify` in its submission) and the farm-wide subscriptions an
admin sets (every owner's jobs). The Lua step that ends a job puts it in the due set
(`ended_job` in lua/_lib.lua; only when the job or the farm has a target, so a farm without
webhooks stores nothing). Every gateway process runs `deliver_due` in the background: a
Lua step takes due entries and moves their time on by a lease, so one process delivers
each; a taken job becomes one entry per target; each entry is POSTed from a small pool of
threads with short timeouts; a failure is tried again with exponential back-off until the
entry is `webhook_max_age_s` old. A request never waits on a receiver, and a receiver that
never answers holds one pool thread for `webhook_timeout_s` per try, ever rarer.

Every payload is signed: `X-Framefarm-Signature: sha256=HMAC(key, timestamp "." body)`
with the timestamp in `X-Framefarm-Timestamp` (a receiver refuses old ones: no replays).
The key is the one of the token owner who asked for the webhook (`GET /v1/webhooks/key`),
derived from the farm's secret, so one client cannot forge another's notifications.

A hostile client could aim a webhook at the farm's own network (a cloud metadata service,
Redis, an admin page): loopback, private, link-local and other special addresses are
refused unless the farm allows them (`webhook_allow_private`, on for `framefarm up`),
checked on the address actually connected to (no DNS rebinding), and no redirect is followed.
"""
from __future__ import annotations

import hashlib
import hmac
import http.client
import ipaddress
import json
import logging
import secrets
import socket
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlsplit

from flask import Flask

from . import keys
from .downloads import signed_archive_link
from .errors import bad_request
from .farm import Farm
from .gateways import redis_now_ms

log = logging.getLogger("framefarm.gateway.webhooks")

FORMATS = ("json", "slack", "discord")
EVENTS = {"done": "job.done", "failed": "job.failed", "cancelled": "job.cancelled"}
MAX_URL = 2000
MAX_SUBSCRIPTIONS = 100
POOL_THREADS = 4
LEASE_S = 60  # a taken entry comes due again after this, should its process die mid-delivery
MAX_BACKOFF_S = 600
HOST_WAIT_MS = 1000  # an entry whose host is busy comes due again after this
RESPONSE_BYTES = 64 * 1024  # read of a receiver's answer: it is thrown away


@dataclass(frozen=True)
class Target:
    url: str
    format: str = "json"
    owner: str = ""  # whose key signs it

    def to_json(self) -> str:
        return json.dumps({"url": self.url, "format": self.format, "owner": self.owner}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Target":
        d = json.loads(text)
        return cls(d["url"], d.get("format", "json"), d.get("owner", ""))


# --- targets: checked when set --------------------------------------------------------

def check_url(url: str, allow_private: bool) -> str:
    """400 for a URL the farm will not POST to; the URL otherwise. A host name is checked
    again, resolved, at each delivery (it may point elsewhere by then)."""
    parts = urlsplit(url)
    if len(url) > MAX_URL or parts.scheme not in ("http", "https") or not parts.hostname:
        raise bad_request(f"a webhook URL must be an http or https URL of at most {MAX_URL} characters",
                          "bad_webhook")
    if parts.username or parts.password:
        raise bad_request("a webhook URL may not carry a user name or password", "bad_webhook")
    try:
        parts.port  # a port out of range raises here
    except ValueError:
        raise bad_request("the webhook URL's port is not a valid port number", "bad_webhook") from None
    host = parts.hostname
    literal = _literal_address(host)
    if not allow_private and (host == "localhost" or host.endswith(".localhost")
                              or (literal is not None and not _public(literal))):
        raise bad_request(f"webhooks to {host} are refused: it is a loopback, private or special address "
                          "(FRAMEFARM_WEBHOOK_ALLOW_PRIVATE lets a farm on a private network use them)",
                          "bad_webhook")
    return url


def target_of(body: Any, owner: str, allow_private: bool) -> Target | None:
    """A job's `notify` (a URL, or {url, format}), checked; None when absent."""
    if body is None:
        return None
    url, fmt = (body, "json") if isinstance(body, str) else (body["url"], body.get("format", "json"))
    return Target(check_url(url, allow_private), fmt, owner)


def subscribe(farm: Farm, url: str, fmt: str, owner: str) -> str:
    if farm.redis.hlen(keys.WEBHOOKS) >= MAX_SUBSCRIPTIONS:
        raise bad_request(f"this farm has {MAX_SUBSCRIPTIONS} webhook subscriptions, its limit", "too_many_webhooks")
    sid = secrets.token_hex(6)
    farm.redis.hset(keys.WEBHOOKS, sid, Target(check_url(url, farm.settings.webhook_allow_private), fmt,
                                               owner).to_json())
    return sid


def subscriptions(farm: Farm) -> dict[str, Target]:
    raw = cast(dict[str, str], farm.redis.hgetall(keys.WEBHOOKS))
    return {sid: Target.from_json(text) for sid, text in sorted(raw.items())}


def unsubscribe(farm: Farm, sid: str) -> bool:
    return bool(farm.redis.hdel(keys.WEBHOOKS, sid))


def owner_key(farm: Farm, owner: str) -> bytes:
    """The key that signs `owner`'s webhooks: only its owner (and admins) can read it."""
    return hmac.new(farm.signer.secret(), f"webhook\n{owner}".encode(), hashlib.sha256).digest()


def sign(key: bytes, timestamp: int, body: bytes) -> str:
    return "sha256=" + hmac.new(key, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()


# --- payloads ------------------------------------------------------------------------

def payload(farm: Farm, job: dict[str, str], delivery: str) -> dict[str, Any]:
    # Imported here: previews reads through the dashboard package, which imports jobs, which imports this.
    from . import previews

    status = job.get("status", "")
    link = signed_archive_link(farm, job) if status == "done" and job.get("archive") else None
    return {
        "event": EVENTS.get(status, "job." + status), "delivery": delivery,
        "job": {"id": job["id"], "name": job.get("name", ""), "owner": job.get("owner", ""), "status": status,
                "frames": f"{job.get('start')}-{job.get('end')}", "frames_done": int(job.get("frames_done", 0)),
                "frames_total": int(job.get("frames_total", 0)), "error": job.get("error") or None,
                "submitted_at_ms": _int(job.get("created_at")), "finished_at_ms": _int(job.get("finished_at"))},
        "download_url": link,
        "thumbnail_url": previews.last_frame_link(farm, job),
    }


def _int(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() else None


def formatted(fmt: str, data: dict[str, Any]) -> dict[str, Any]:
    """The body for the target's format: the farm's JSON, or a chat message for Slack's and
    Discord's incoming webhooks (each takes one text field)."""
    if fmt == "json":
        return data
    job = data["job"]
    text = (f"Framefarm: job \"{job['name']}\" ({job['id']}) {job['status']}: "
            f"{job['frames_done']}/{job['frames_total']} frames")
    if job["error"]:
        text += f". {job['error'][:500]}"
    if data["download_url"]:
        text += f"\nDownload (link expires): {data['download_url']}"
    return {"text": text} if fmt == "slack" else {"content": text[:2000]}


# --- delivery ------------------------------------------------------------------------

class Undeliverable(Exception):
    """A try failed (no answer, a refused address, a non-2xx answer); tried again later."""


def _literal_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def _public(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        addr = addr.ipv4_mapped
    return addr.is_global and not addr.is_multicast


def _resolve(host: str, port: int, allow_private: bool) -> str:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as e:
        raise Undeliverable(f"cannot resolve {host}: {e}") from None
    for *_, sockaddr in infos:
        ip = str(sockaddr[0])
        if allow_private or _public(ipaddress.ip_address(ip)):
            return ip
    raise Undeliverable(f"{host} resolves only to loopback, private or special addresses: refused")


class _PinnedHTTP(http.client.HTTPConnection):
    """Connects to the address that was checked, whatever the name resolves to by now."""

    def __init__(self, host: str, port: int, ip: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._ip = ip

    def connect(self) -> None:
        self.sock = socket.create_connection((self._ip, self.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, ip: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._ip = ip

    def connect(self) -> None:
        sock = socket.create_connection((self._ip, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


def post(target: Target, body: bytes, headers: dict[str, str], timeout: float, allow_private: bool) -> int:
    """POST once; the answer's status, or Undeliverable. Redirects are not followed."""
    parts = urlsplit(target.url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    ip = _resolve(host, port, allow_private)
    conn_class = _PinnedHTTPS if parts.scheme == "https" else _PinnedHTTP
    conn = conn_class(host, port, ip, timeout)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        conn.request("POST", path, body=body, headers=headers)
        resp = conn.getresponse()
        resp.read(RESPONSE_BYTES)
        status = resp.status
    except (OSError, http.client.HTTPException) as e:
        raise Undeliverable(f"{type(e).__name__}: {e}") from None
    finally:
        conn.close()
    if not 200 <= status < 300:
        raise Undeliverable(f"the receiver answered {status}")
    return status


class Deliverer:
    """One per gateway process: takes due entries and posts them from a small pool."""

    def __init__(self, farm: Farm, app: Flask) -> None:
        self.farm, self.app = farm, app  # the app: its routes make a payload's links
        self._pool = ThreadPoolExecutor(POOL_THREADS, thread_name_prefix="webhook")
        self._busy = 0
        self._hosts: set[str] = set()  # receivers' hosts with a post in flight
        self._lock = threading.Lock()

    def step(self) -> int:
        """Background step: start deliveries for the entries due now, as pool threads are free
        (a job that just ended is expanded into its entries, which are due at once)."""
        started = 0
        for _ in range(2):
            with self._lock:
                free = POOL_THREADS - self._busy
            if free <= 0:
                break
            taken = cast(list[str], self.farm.scripts.take_webhooks(args=[LEASE_S * 1000, free]))
            expanded = False
            for entry in taken:
                if entry.startswith("job:"):
                    expanded = self._expand(entry.removeprefix("job:")) or expanded
                elif self._start(entry):
                    started += 1
            if not expanded:
                break
        return started

    def _expand(self, job_id: str) -> bool:
        """A job that ended: one entry per target, due now; nothing if its record is gone."""
        r = self.farm.redis
        notify = cast(str | None, r.hget(keys.job(job_id), "notify"))
        targets = {f"s{sid}": t for sid, t in subscriptions(self.farm).items()}
        if notify:
            targets["job"] = Target.from_json(notify)
        now_ms = redis_now_ms(r)
        pipe = r.pipeline()
        for name, target in targets.items():
            entry = f"d:{job_id}:{name}"
            pipe.hset(keys.WEBHOOK_ENTRIES, entry, json.dumps({"target": target.to_json(), "since": now_ms,
                                                               "attempts": 0}))
            pipe.zadd(keys.WEBHOOKS_DUE, {entry: 0})
        pipe.zrem(keys.WEBHOOKS_DUE, f"job:{job_id}")
        pipe.execute()
        return bool(targets)

    def _start(self, entry: str) -> bool:
        """Post `entry` from the pool, unless its receiver's host already has a post in flight
        from this process: then it comes due again shortly. So a receiver that hangs holds one
        thread, never the whole pool, and the others' webhooks go out meanwhile."""
        raw = cast(str | None, self.farm.redis.hget(keys.WEBHOOK_ENTRIES, entry))
        if raw is None:  # delivered by another process meanwhile
            self.farm.redis.zrem(keys.WEBHOOKS_DUE, entry)
            return False
        host = urlsplit(Target.from_json(json.loads(raw)["target"]).url).netloc  # one receiver: host and port
        with self._lock:
            if host in self._hosts:
                busy = True
            else:
                busy = False
                self._hosts.add(host)
                self._busy += 1
        if busy:
            self.farm.redis.zadd(keys.WEBHOOKS_DUE, {entry: redis_now_ms(self.farm.redis) + HOST_WAIT_MS})
            return False
        self._pool.submit(self._deliver, entry, host)
        return True

    def _deliver(self, entry: str, host: str) -> None:
        try:
            with self.app.app_context():
                self._try(entry)
        except Exception:  # a bug here must not kill the pool thread's later work
            log.exception("webhook %s", entry)
        finally:
            with self._lock:
                self._busy -= 1
                self._hosts.discard(host)

    def _try(self, entry: str) -> None:
        r, s = self.farm.redis, self.farm.settings
        raw = cast(str | None, r.hget(keys.WEBHOOK_ENTRIES, entry))
        job_id = entry.split(":")[1]
        job = cast(dict[str, str], r.hgetall(keys.job(job_id)))
        if raw is None or not job:  # delivered by another process, or the job's record is gone
            r.zrem(keys.WEBHOOKS_DUE, entry)
            return
        state = json.loads(raw)
        target = Target.from_json(state["target"])
        job["id"] = job_id
        body = json.dumps(formatted(target.format, payload(self.farm, job, entry))).encode()
        ts = int(time.time())
        headers = {"Content-Type": "application/json", "User-Agent": "Framefarm-Webhook",
                   "X-Framefarm-Event": EVENTS.get(job.get("status", ""), "job"), "X-Framefarm-Delivery": entry,
                   "X-Framefarm-Timestamp": str(ts),
                   "X-Framefarm-Signature": sign(owner_key(self.farm, target.owner), ts, body)}
        try:
            post(target, body, headers, s.webhook_timeout_s, s.webhook_allow_private)
        except Undeliverable as e:
            self._again(entry, state, target, str(e))
            return
        self._forget(entry)
        log.info("webhook for job %s delivered to %s", job_id, _host(target.url))

    def _forget(self, entry: str) -> None:
        pipe = self.farm.redis.pipeline()
        pipe.zrem(keys.WEBHOOKS_DUE, entry)
        pipe.hdel(keys.WEBHOOK_ENTRIES, entry)
        pipe.execute()

    def _again(self, entry: str, state: dict[str, Any], target: Target, why: str) -> None:
        r, s = self.farm.redis, self.farm.settings
        state["attempts"] += 1
        now_ms = redis_now_ms(r)  # due times are on Redis's clock, which every gateway shares
        age_s = (now_ms - state["since"]) / 1000
        if age_s >= s.webhook_max_age_s:
            self._forget(entry)
            log.warning("webhook %s to %s given up after %d tries: %s", entry, _host(target.url),
                        state["attempts"], why)
            return
        # Exponential with jitter: a dead receiver is tried ever more rarely.
        delay = min(MAX_BACKOFF_S, 2 ** state["attempts"]) * (0.5 + secrets.randbelow(1000) / 1000)
        pipe = r.pipeline()
        pipe.hset(keys.WEBHOOK_ENTRIES, entry, json.dumps(state))
        pipe.zadd(keys.WEBHOOKS_DUE, {entry: now_ms + int(delay * 1000)})
        pipe.execute()
        log.warning("webhook %s to %s failed (try %d, next in %.0fs): %s", entry, _host(target.url),
                    state["attempts"], delay, why)


def _host(url: str) -> str:
    """A URL's host for logs: a webhook URL may carry a secret in its path (Slack's do)."""
    return urlsplit(url).hostname or "?"
