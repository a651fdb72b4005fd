"""What every request of a gateway process shares: Redis, storage, scripts, settings."""
from __future__ import annotations

from dataclasses import dataclass, field

import redis
from flask import current_app

from .config import Settings
from .events import Notifier
from .redisconn import redis_from_url
from .scripts import Scripts
from .signing import Signer
from .storage import Storage, open_storage

# redis-py 8 caps a client's pool at 100 connections. A gunicorn process serves up to
# FRAMEFARM_GUNICORN_CONNECTIONS requests at once under gevent (4000; under gthread,
# FRAMEFARM_GUNICORN_THREADS) plus its background loops and event subscription; a
# request holds a connection only while it talks to Redis (a waiting claim holds none,
# and at most 32 woken waits of a process ask at once: longpoll.py). At the cap,
# requests fail with "Too many connections" (503).
MAX_REDIS_CONNECTIONS = 1000


@dataclass
class Farm:
    """`redis` answers text (decode_responses): every key and value the farm stores is text."""

    settings: Settings
    redis: redis.Redis
    storage: Storage
    scripts: Scripts = field(init=False)
    notifier: Notifier = field(init=False)
    signer: Signer = field(init=False)

    def __post_init__(self) -> None:
        self.scripts = Scripts(self.redis)
        self.notifier = Notifier(self.redis)
        self.signer = Signer(self.redis)

    @classmethod
    def from_settings(cls, settings: Settings) -> "Farm":
        r = redis_from_url(settings.redis_url, socket_timeout=10, socket_connect_timeout=3,
                           health_check_interval=15, max_connections=MAX_REDIS_CONNECTIONS,
                           decode_responses=True)
        return cls(settings, r, open_storage(settings.storage))

    def problems(self) -> dict[str, str]:
        """Why this gateway cannot serve now: dependency -> what went wrong reaching it (empty: ready)."""
        problems: dict[str, str] = {}
        try:
            self.redis.ping()
        except Exception as e:  # any failure means "not ready"; the message says which
            problems["redis"] = str(e)
        try:
            self.storage.ping()
        except Exception as e:
            problems["storage"] = str(e)
        return problems

    def ms(self, seconds: float) -> int:
        return int(seconds * 1000)


def current_farm() -> Farm:
    """The farm of the app handling this request (set up by app.create_app)."""
    return current_app.extensions["framefarm"]
