"""The one HTTP client of Framefarm, with gateway failover.

Used by the CLI, the worker agent and the Blender add-on (which bundles this
package at build time), so it needs nothing beyond the standard library.

It knows the configured gateways and, refreshed from `GET /v1/gateways`, the
live ones. A refused connection, a timeout or a 502/503/504 marks that gateway
down for a while and moves on to the next at once; when every gateway has
failed it backs off with jitter and tries again until `retry_for` runs out.
Connecting has its own short timeout, so a dead host is left within two
seconds of its first failed call.

Connections are kept alive: each gateway has a small pool of idle connections, so a
worker's claim, heartbeat and result, or a client's polls, do not open a TCP (and TLS)
connection per request. A pooled connection the gateway has meanwhile closed (its
keep-alive timeout, a restart) is noticed before it is used, or when the request on it
fails before any answer, and the request then goes once more on a fresh connection to the
same gateway: only a fresh connection's failure counts against the gateway, so failover
is exactly as before.

HTTPS gateways are checked against the system's CAs plus, where the farm runs its own CA,
the bundle given as `ca_bundle` (--ca-bundle, FRAMEFARM_CA_BUNDLE). A certificate that
fails that check is not a gateway being down: when every gateway fails it, the request
stops at once with an error that says so. Discovery never trades https for http: a
gateway list learned over https that names http URLs has those entries ignored, since the
client would send its token there in the clear.
"""
from __future__ import annotations

import functools
import http.client
import json
import logging
import random
import select
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Callable, Iterable, cast
from urllib.parse import urlencode, urlsplit

log = logging.getLogger("framefarm.client")

USER_AGENT = "framefarm-client/0.1"
RETRY_STATUSES = {502, 503, 504}
DOWN_FOR_S = 10.0
BLOCK = 1024 * 1024
# Idle connections kept per gateway (a worker's slots and heartbeat, a client's threads), and
# how long one may sit idle: gateways close theirs sooner (gunicorn's keepalive is 5 s), which
# the check before reuse notices; the bound only keeps a long-idle process from holding sockets.
POOL_SIZE = 8
POOL_IDLE_S = 60.0


class FarmError(Exception):
    """The farm answered with an error (4xx), or could not be reached at all."""

    def __init__(self, message: str, status: int | None = None, code: str | None = None,
                 details: dict | None = None) -> None:
        super().__init__(message)
        self.message, self.status, self.code, self.details = message, status, code, details or {}


class FarmUnavailable(FarmError):
    """No gateway answered within the retry window."""


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes = b""
    raw: http.client.HTTPResponse | None = None
    conn: http.client.HTTPConnection | None = field(default=None, repr=False)

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()


def backoff(round_no: int, floor: float = 0.0, cap: float = 5.0) -> float:
    """Seconds to wait before try `round_no` + 1 (1, 2, ...): doubling from 0.25 s up to
    `cap`, jittered so that many processes refused at once do not come back at once;
    never under `floor` (a Retry-After), which gets the jitter on top of it."""
    if floor > 0:
        return floor * random.uniform(1.0, 1.25)
    return min(cap, 0.25 * 2 ** round_no) * random.uniform(0.5, 1.0)


class _Pool:
    """Idle keep-alive connections, per gateway URL; any thread may take or give one."""

    def __init__(self) -> None:
        self._idle: dict[str, list[tuple[http.client.HTTPConnection, float]]] = {}
        self._lock = threading.Lock()

    def take(self, url: str) -> http.client.HTTPConnection | None:
        """An idle connection to `url` still open at the other end, or None."""
        while True:
            with self._lock:
                idle = self._idle.get(url)
                if not idle:
                    return None
                conn, since = idle.pop()
            if time.monotonic() - since < POOL_IDLE_S and _still_open(conn):
                return conn
            conn.close()

    def give(self, url: str, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            idle = self._idle.setdefault(url, [])
            if len(idle) < POOL_SIZE:
                idle.append((conn, time.monotonic()))
                return
        conn.close()

    def drop(self, url: str) -> None:
        """Close every idle connection to `url` (a gateway that just failed)."""
        with self._lock:
            idle = self._idle.pop(url, [])
        for conn, _ in idle:
            conn.close()


def _still_open(conn: http.client.HTTPConnection) -> bool:
    """Whether an idle connection can carry a request: readable while idle means the
    gateway closed it (or sent something unasked), so it cannot."""
    sock = conn.sock
    if sock is None:
        return False
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return False
    return not readable


class CertificateError(FarmError):
    """No gateway's TLS certificate could be verified: a setup problem, not an outage."""


@functools.lru_cache(maxsize=8)
def tls_context(ca_bundle: str | None = None) -> ssl.SSLContext:
    """The system's trusted CAs, plus a private CA's bundle (PEM) where one is given: the
    farm's own CA then vouches for its gateways while storage links (GCS) keep the public ones.
    Made once per bundle: loading the system's CAs takes ~30 ms, and a context is safe to share."""
    context = ssl.create_default_context()
    if ca_bundle:
        try:
            context.load_verify_locations(cafile=ca_bundle)
        except (OSError, ssl.SSLError) as e:
            raise FarmError(f"cannot read the CA bundle {ca_bundle}: {e}") from None
    return context


def connection(url: str, timeout: float, tls: ssl.SSLContext | None = None) -> http.client.HTTPConnection:
    """An unopened connection to `url`'s host, with `tls` (default: the system's CAs) for https."""
    parts = urlsplit(url)
    if parts.scheme == "https":
        return http.client.HTTPSConnection(parts.hostname or "", parts.port, timeout=timeout, blocksize=BLOCK,
                                           context=tls or tls_context())
    return http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout, blocksize=BLOCK)


def certificate_hint(error: ssl.SSLCertVerificationError) -> str:
    return (f"{error.verify_message or error.reason or error}; if the farm's gateways have certificates "
            f"from its own CA, pass --ca-bundle FILE or set FRAMEFARM_CA_BUNDLE to that CA's PEM file")


def normalize(url: str) -> str:
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = "http://" + url
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FarmError(f"{url!r} is not a gateway URL (expected http://host:port)")
    return url


class ProgressReader:
    """Wraps a file being uploaded and reports the bytes sent."""

    def __init__(self, fh: BinaryIO, callback: Callable[[int], None] | None) -> None:
        self._fh, self._cb = fh, callback

    def read(self, n: int = -1) -> bytes:
        data = self._fh.read(n)
        if data and self._cb:
            self._cb(len(data))
        return data


class Client:
    def __init__(self, gateways: Iterable[str], token: str | None, *, connect_timeout: float = 2.0,
                 read_timeout: float = 60.0, retry_for: float = 120.0, refresh_s: float = 30.0,
                 discover: bool = True, ca_bundle: str | None = None) -> None:
        self.configured = [normalize(u) for u in gateways]
        if not self.configured:
            raise FarmError("no gateway configured: pass --gateway URL or set FRAMEFARM_GATEWAYS")
        self.token = token
        self.connect_timeout, self.read_timeout = connect_timeout, read_timeout
        self.retry_for, self.refresh_s, self.discover = retry_for, refresh_s, discover
        self._known = list(self.configured)
        self._down: dict[str, float] = {}
        self._preferred = self.configured[0]
        self._refreshed_at = float("-inf")
        self._lock = threading.Lock()
        self.tls = tls_context(ca_bundle)
        self._refused: set[str] = set()  # http URLs a gateway announced over https, logged once each
        self._pool = _Pool()

    # -- gateway list ------------------------------------------------------------------
    @property
    def gateways(self) -> list[str]:
        with self._lock:
            return list(self._known)

    def _candidates(self) -> list[str]:
        """Gateways to try, in order: the preferred one, then other live ones, then
        those marked down (a down mark is a hint, never a reason to give up)."""
        now = time.monotonic()
        with self._lock:
            order = sorted(self._known, key=lambda u: (u != self._preferred, self._down.get(u, 0) > now))
        return order

    def _mark_down(self, url: str, reason: object) -> None:
        with self._lock:
            if self._down.get(url, 0) <= time.monotonic():
                log.warning("gateway %s failed (%s); trying the next one", url, reason)
            self._down[url] = time.monotonic() + DOWN_FOR_S
            if self._preferred == url:
                live = [u for u in self._known if self._down.get(u, 0) <= time.monotonic()]
                self._preferred = live[0] if live else url
        self._pool.drop(url)  # its other idle connections would fail the same way, one by one

    def _mark_up(self, url: str) -> None:
        with self._lock:
            self._down.pop(url, None)
            self._preferred = url

    def refresh(self, force: bool = False) -> None:
        """Learn the live gateways from the farm (new ones join, silent ones leave)."""
        if not self.discover or (not force and time.monotonic() - self._refreshed_at < self.refresh_s):
            return
        self._refreshed_at = time.monotonic()
        for url in self._candidates():
            try:
                resp = self._send(url, "GET", "/v1/gateways", None, {}, self.connect_timeout + 3, False)
            except (OSError, http.client.HTTPException) as e:
                # Marked down here too, or the request that follows pays for the same dead gateway again.
                self._mark_down(url, e)
                continue
            if resp.status != 200:
                if resp.status in RETRY_STATUSES:
                    self._mark_down(url, f"HTTP {resp.status}")
                continue
            live = [normalize(g["url"]) for g in resp.json().get("gateways", []) if g.get("url")]
            if urlsplit(url).scheme == "https":
                live = self._no_downgrade(url, live)
            with self._lock:
                # Configured gateways stay (they may come back); announced ones are added.
                self._known = list(dict.fromkeys(self.configured + live))
            return

    def _no_downgrade(self, source: str, urls: list[str]) -> list[str]:
        """`urls` without the http ones: learned over https, they would carry the token in the clear."""
        kept = [u for u in urls if urlsplit(u).scheme == "https"]
        for u in urls:
            if u not in kept and u not in self._refused:
                self._refused.add(u)
                log.warning("ignoring gateway %s, announced by %s: it is plain http and this client "
                            "reached the farm over https", u, source)
        return kept

    # -- requests ----------------------------------------------------------------------
    def request(self, method: str, path: str, *, json_body: Any = None, body: BinaryIO | bytes | None = None,
                headers: dict[str, str] | None = None, params: dict[str, Any] | None = None,
                read_timeout: float | None = None, ok: tuple[int, ...] = (200, 201, 204),
                stream: bool = False, retry_for: float | None = None,
                progress: Callable[[int], None] | None = None) -> Response:
        self.refresh()
        hdrs = {"User-Agent": USER_AGENT, **(headers or {})}
        if self.token:
            hdrs["Authorization"] = f"Bearer {self.token}"
        if json_body is not None:
            body = json.dumps(json_body).encode()
            hdrs["Content-Type"] = "application/json"
        if params:
            # doseq: a list is the parameter repeated (?held=a&held=b), as openapi.yaml's form style.
            path += "?" + urlencode({k: v for k, v in params.items() if v is not None}, doseq=True)
        # A file is rewound for each gateway tried; bytes are simply sent again.
        rewind = cast(BinaryIO, body) if hasattr(body, "seek") else None
        start_pos = rewind.tell() if rewind is not None else None
        deadline = time.monotonic() + (self.retry_for if retry_for is None else retry_for)
        timeout = read_timeout or self.read_timeout
        round_no, last, wait_hint = 0, "no gateway", 0.0
        while True:
            untrusted: list[str] = []  # gateways whose certificate failed this round
            candidates = self._candidates()
            for url in candidates:
                payload: ProgressReader | BinaryIO | bytes | None = body
                if rewind is not None and start_pos is not None:
                    rewind.seek(start_pos)
                    payload = ProgressReader(rewind, progress) if progress else rewind
                try:
                    resp = self._send(url, method, path, payload, hdrs, timeout, stream)
                except ssl.SSLCertVerificationError as e:
                    self._mark_down(url, e)
                    untrusted.append(f"{url}: {certificate_hint(e)}")
                    continue
                except (OSError, http.client.HTTPException) as e:
                    self._mark_down(url, e)
                    last = f"{url}: {e}"
                    continue
                if resp.status in RETRY_STATUSES or _busy(resp):
                    detail = _error_message(resp)
                    resp.close()
                    last = f"{url}: HTTP {resp.status} {detail}"
                    wait_hint = max(wait_hint, _retry_after(resp))
                    if resp.status in RETRY_STATUSES:  # a 429 is this token's limit, not a sick gateway
                        self._mark_down(url, f"HTTP {resp.status}")
                    continue
                self._mark_up(url)
                if resp.status not in ok:
                    raise _as_error(resp)
                return resp
            if len(untrusted) == len(candidates):  # retrying cannot make a certificate trusted
                raise CertificateError("cannot verify the gateway's TLS certificate: " + untrusted[0])
            round_no += 1
            # Retry-After is a floor: asking sooner is answered the same way.
            pause = backoff(round_no, wait_hint)
            if time.monotonic() + pause > deadline:
                raise FarmUnavailable(f"no gateway answered ({last})")
            log.info("no gateway answered (%s); retrying in %.1fs", last, pause)
            time.sleep(pause)
            self.refresh(force=True)

    def _send(self, base: str, method: str, path: str, body, headers: dict[str, str], timeout: float,
              stream: bool) -> Response:
        # A body read from a file cannot be sent twice here (the caller rewinds it per gateway),
        # so it goes on a fresh connection; bytes and empty bodies may use a pooled one.
        pooled = None if hasattr(body, "read") else self._pool.take(base)
        if pooled is not None:
            try:
                return self._exchange(base, pooled, method, path, body, headers, timeout, stream)
            except (ConnectionError, http.client.BadStatusLine, http.client.CannotSendRequest):
                pass  # closed by the gateway as we sent: not the gateway's failure, try a fresh connection
        conn = connection(base, self.connect_timeout, self.tls)
        conn.connect()
        assert conn.sock is not None
        # A request's headers and body may go in separate writes (a streamed file): with Nagle's
        # algorithm on, the body then waits for the headers' ACK, which the gateway delays (up
        # to 40 ms on Linux) while it waits for the body. Every such request paid it.
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return self._exchange(base, conn, method, path, body, headers, timeout, stream)

    def _exchange(self, base: str, conn: http.client.HTTPConnection, method: str, path: str, body,
                  headers: dict[str, str], timeout: float, stream: bool) -> Response:
        """One request and its answer on `conn`, which goes back to the pool when the answer
        was read whole and the gateway keeps the connection open; else it is closed."""
        try:
            assert conn.sock is not None
            conn.sock.settimeout(timeout)
            conn.request(method, urlsplit(base).path + path, body=body, headers=headers)
            raw = conn.getresponse()
            hdrs = {k.lower(): v for k, v in raw.getheaders()}
            if stream and 200 <= raw.status < 400:
                return Response(raw.status, hdrs, raw=raw, conn=conn)
            data = raw.read()
        except BaseException:
            conn.close()
            raise
        if raw.will_close:
            conn.close()
        else:
            self._pool.give(base, conn)
        return Response(raw.status, hdrs, data)


def _error_message(resp: Response) -> str:
    try:
        return resp.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return resp.body[:200].decode(errors="replace")


def _busy(resp: Response) -> bool:
    """A 429 with Retry-After: over a limit that frees up with time (too many requests or
    waiting requests for this token), so the same request is sent again after that long.
    A 429 without it is a limit that time does not lift (too many active jobs): an error."""
    return resp.status == 429 and "retry-after" in resp.headers


def _retry_after(resp: Response) -> float:
    try:
        return float(resp.headers.get("retry-after", 0))
    except ValueError:
        return 0.0


def _as_error(resp: Response) -> FarmError:
    try:
        err = resp.json()["error"]
        details = {k: v for k, v in err.items() if k not in ("code", "message")}
        return FarmError(err["message"], resp.status, err.get("code"), details)
    except (ValueError, KeyError, TypeError):
        return FarmError(f"HTTP {resp.status}: {resp.body[:200].decode(errors='replace')}", resp.status)
