"""A real farm for system tests (redis-server, gunicorn gateways, `framefarm worker`
processes) and its tokens: the fixtures of tests/system/conftest.py build on them, and test
modules that run a farm of their own (a pinned Blender, one farm per module) import them from
here, never from conftest, which pytest imports under its own name."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from farmtools import wait_for
from framefarm.gateway import keys
from framefarm.gateway.auth import create_token
from framefarm.gateway.localfarm import GatewayProcess, RedisServer, WorkerProcess, free_port


@dataclass
class Tokens:
    client: str
    client2: str
    worker: str
    admin: str


def make_tokens(r) -> Tokens:
    return Tokens(*(create_token(r, role) for role in ("client", "client", "worker", "admin")))


@dataclass
class Cluster:
    """A real farm: redis-server, gunicorn gateways, `framefarm worker` processes."""

    root: Path
    redis: RedisServer
    tokens: Tokens
    env: dict[str, str]
    gateways: list[GatewayProcess] = field(default_factory=list)
    workers: list[WorkerProcess] = field(default_factory=list)

    def add_gateway(self, processes: int = 2) -> GatewayProcess:
        gw = GatewayProcess(free_port(), self.redis.url, f"file://{self.root / 'storage'}",
                            self.root / f"gateway-{len(self.gateways)}.log", processes=processes, threads=16,
                            waiters=8, env=self.env)
        self.gateways.append(gw.start())
        return gw

    def add_worker(self, **kwargs) -> WorkerProcess:
        n = len(self.workers)
        w = WorkerProcess(f"test-{n}", [g.url for g in self.gateways], self.tokens.worker,
                          self.root / f"worker-{n}", self.root / f"worker-{n}.log", device="CPU", **kwargs)
        self.workers.append(w.start())
        return w

    def wait_registered(self, count: int, timeout: float = 60) -> None:
        """Until `count` workers are registered: a started worker process needs a moment
        (Python, probing Blender) before the farm knows it."""
        r = self.redis.client()
        wait_for(lambda: r.zcard(keys.WORKERS) >= count, timeout, f"{count} worker(s) to register")

    @property
    def urls(self) -> list[str]:
        return [g.url for g in self.gateways]

    def client_env(self) -> dict[str, str]:
        return {"FRAMEFARM_GATEWAYS": ",".join(self.urls), "FRAMEFARM_TOKEN": self.tokens.client,
                "FRAMEFARM_HOME": str(self.root / "home")}

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.tail(40)}" for p in self.gateways + self.workers)

    def stop(self) -> None:
        for p in self.workers + self.gateways:
            p.stop(timeout=20)


def cluster_env() -> dict[str, str]:
    return {"FRAMEFARM_LEASE_S": "4", "FRAMEFARM_HEARTBEAT_S": "1", "FRAMEFARM_CLAIM_WAIT_S": "5"}
