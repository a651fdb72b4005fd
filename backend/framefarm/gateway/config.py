"""Gateway settings: defaults, overridden by FRAMEFARM_* environment variables.

Every gateway of a cluster must run with the same lease and attempt settings;
they are read from the environment so gunicorn, systemd and containers all set
them the same way.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, fields
from typing import Any, Mapping


@dataclass(frozen=True)
class Settings:
    redis_url: str = "redis://127.0.0.1:6379/0"
    storage: str = "file://./var/storage"
    # The URL clients should use for this gateway; announced in /v1/gateways.
    public_url: str = ""
    heartbeat_s: float = 3.0
    lease_s: float = 10.0
    max_attempts: int = 3
    # A worker that fails the same job this many times is kept away from it.
    block_after: int = 2
    # How long a claim or a job long-poll may wait before answering "nothing yet".
    claim_wait_s: float = 20.0
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
    # Per gunicorn process: long-polls beyond this answer at once, so waiting
    # workers can never take every thread and starve clients.
    max_waiters: int = 48

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
                values[f.name] = kind(raw) if kind is not str else raw
            except ValueError:
                raise SystemExit(f"FRAMEFARM_{f.name.upper()}={raw!r} is not a valid {kind.__name__}")
        # FRAMEFARM_REDIS_URL and FRAMEFARM_STORAGE are the documented names.
        values.update(overrides)
        return cls(**values)
