"""Gateway settings: defaults, overridden by FRAMEFARM_* environment variables.

Every gateway of a cluster must run with the same lease and attempt settings;
they are read from the environment so gunicorn, systemd and containers all set
them the same way.
"""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass, fields
from typing import Any, Mapping


@dataclass(frozen=True)
class Settings:
    redis_url: str = "redis://127.0.0.1:6379/0"
    storage: str = "file://./var/storage"
    # The URL clients should use for this gateway; announced in /v1/gateways, and the host of
    # every signed link it hands out (see link_base).
    public_url: str = ""
    # Where gunicorn listens (FRAMEFARM_BIND), and its TLS certificate and key: with both
    # set the gateway serves HTTPS itself (gunicorn_conf.py).
    bind: str = "127.0.0.1:8400"
    certfile: str = ""
    keyfile: str = ""
    # Behind this many proxies or TLS load balancers that set X-Forwarded-For/-Proto, the
    # gateway believes those headers (werkzeug's ProxyFix); at 0 it believes none of them.
    proxy_hops: int = 0
    heartbeat_s: float = 3.0
    lease_s: float = 10.0
    max_attempts: int = 3
    # A worker that fails the same job this many times is kept away from it.
    block_after: int = 2
    # How long a claim or a job long-poll may wait before answering "nothing yet". An idle
    # worker's claim is all it sends (the gateway renews its presence while the claim waits:
    # workers.WaitingClaims), so its wait sets what idle workers cost, one request per worker
    # per wait. A frozen gateway (alive, answering nothing) holds its idle workers for this
    # plus 30 s.
    claim_wait_s: float = 120.0
    job_wait_max_s: float = 30.0
    # A gateway or worker silent for this long is considered gone.
    gateway_timeout_s: float = 10.0
    worker_timeout_s: float = 30.0
    max_upload_bytes: int = 8 * 1024**3
    max_frames: int = 100_000
    link_ttl_s: int = 3600
    # Clean-up (cleanup.py): final zips are deleted this long after their job finished;
    # an unheld scene file is kept this long after its upload and after its last job.
    archive_retention_s: int = 7 * 24 * 3600
    files_grace_s: int = 3600
    cleanup_period_s: float = 60.0
    # Per gunicorn process: long-polls beyond this are answered 429 at once, so waiting
    # requests can never take every thread and starve health checks, heartbeats and clients.
    max_waiters: int = 48
    # --- Limits on what one client may ask (docs/security.md, "Limits"); past each one the
    # answer is a 4xx whose message names the setting (FRAMEFARM_<NAME>).
    # Long-polls one party holds per gateway process: a client token's job polls, or one
    # registered worker's claims (a worker token is often shared by a whole farm).
    max_waiters_per_token: int = 8
    max_parts: int = 10_000  # per job: every part is a Redis hash
    max_active_jobs: int = 100  # per owner: jobs queued, running or assembling
    # Live workers one worker token may register: each is a Redis hash that job views and the
    # farm's chunking read, and one token registered 2,000 in 3.7 s (quotas.admit_worker).
    max_workers_per_token: int = 1000
    # The priorities a client token may give; admins may use the API's whole range.
    client_priority_min: int = -100
    client_priority_max: int = 100
    # Requests per token per minute (a fixed window in Redis); 0 turns the limit off. Workers
    # are off by default: a worker token shared by many machines makes many requests.
    client_requests_per_min: int = 1200
    worker_requests_per_min: int = 0
    # Each gateway process may remember a token it found in Redis for this long (auth.TokenCache),
    # so a worker's claims and results do not look their token up each time: a revoked or
    # deleted token is then refused by every gateway at most this long after. 0 (the default)
    # looks up every request: with it on, test_contention's 200 claimers at once met connect
    # timeouts on a loaded two-core machine, which nobody has explained yet (docs/benchmarks.md).
    token_cache_s: float = 0.0
    # Parts per page of a job's part list (GET /v1/jobs/{id}?parts=1).
    part_page_size: int = 1000
    # A part's result: at most this many bytes per frame once unpacked (8K RGBA float EXR
    # with room to spare: the gateway does not know the scene's resolution), and no entry
    # unpacking to more than this many times its packed size (workers store frames uncompressed).
    max_frame_bytes: int = 1024**3
    max_result_ratio: int = 100
    # Parts sized by time (parts.py): a job without a chunk starts with parts of this many
    # frames, then, once results say how long a frame takes, gets parts of about this many
    # seconds each (a job's own target_part_seconds wins); 0 turns it off (parts by count).
    target_part_seconds: int = 180
    first_part_frames: int = 1
    # An ended job's records (job, parts, manifest) are deleted this long after it ended
    # (never before its archive's retention); until then an expired job is still listed.
    record_retention_s: int = 30 * 24 * 3600
    # Estimates (estimates.py): what one worker costs per hour, for an estimate's `cost` (0: the
    # farm has no price, and estimates show none), and the currency it is in.
    price_per_worker_hour: float = 0.0
    currency: str = "USD"
    # Webhooks (webhooks.py): each try waits this long for the receiver; a delivery is retried
    # with back-off until this old. Loopback/private/special addresses are refused unless allowed
    # (a client could aim a webhook at the farm's own network); `framefarm up` allows them.
    webhook_timeout_s: float = 5.0
    webhook_max_age_s: int = 3600
    webhook_allow_private: bool = False
    # GET /metrics (metrics.py): for a request with this bearer token (or an admin token), or
    # from an address in these comma-separated networks.
    metrics_token: str = ""
    metrics_allow: str = "127.0.0.1/32,::1/128"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> "Settings":
        source: Mapping[str, str] = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = source.get("FRAMEFARM_" + f.name.upper())
            if raw is None:
                continue
            kind: type = type(f.default)  # every setting has a default: its type reads the text
            try:
                values[f.name] = _flag(raw) if kind is bool else kind(raw) if kind is not str else raw
            except ValueError:
                raise SystemExit(f"FRAMEFARM_{f.name.upper()}={raw!r} is not a valid {kind.__name__}")
        # FRAMEFARM_REDIS_URL and FRAMEFARM_STORAGE are the documented names.
        values.update(overrides)
        return cls(**values)

    @property
    def tls(self) -> bool:
        return bool(self.certfile and self.keyfile)

    @property
    def link_base(self) -> str:
        """Scheme and host of the signed links this gateway hands out: its public URL, else
        its listen address (a wildcard address names this machine by its host name). Never a
        request's Host header: whoever sends the request chooses that, and a forged one would
        send the link, signature and all, to the sender's host."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host, _, port = self.bind.removeprefix("tcp://").rpartition(":")
        if host in ("", "0.0.0.0", "::", "[::]") or self.bind.startswith("unix:"):
            host = socket.gethostname()
        return f"{'https' if self.tls else 'http'}://{host}" + (f":{port}" if port.isdigit() else "")


def _flag(raw: str) -> bool:
    """A yes/no setting: bool("0") would be True."""
    word = raw.strip().lower()
    if word in ("1", "true", "yes", "on"):
        return True
    if word in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(raw)
