"""What every request of a gateway process shares: Redis, storage, scripts, settings."""
from __future__ import annotations

from dataclasses import dataclass, field

import redis

from .config import Settings
from .keys import Scripts
from .notify import Notifier
from .signing import Signer
from .storage import Storage, open_storage


@dataclass
class Farm:
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
        r = redis.Redis.from_url(settings.redis_url, socket_timeout=10, socket_connect_timeout=3,
                                 health_check_interval=15)
        return cls(settings, r, open_storage(settings.storage))

    def ms(self, seconds: float) -> int:
        return int(seconds * 1000)
