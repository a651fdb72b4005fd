"""System-test fixtures: a real redis-server, gateway apps, gunicorn clusters, scenes.

They live here, not in tests/conftest.py, so that the unit tests never import the
gateway or start anything (see tests/unit/conftest.py)."""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from farmtools import make_scene, require, require_blender, wait_for
from framefarm.gateway import keys
from framefarm.gateway.app import create_app
from framefarm.gateway.auth import create_token
from framefarm.gateway.config import Settings
from framefarm.gateway.localfarm import GatewayProcess, RedisServer, WorkerProcess, free_port


@pytest.fixture(scope="session")
def short_tmp():
    # Unix socket paths must stay short; pytest's tmp paths can be long.
    path = Path(tempfile.mkdtemp(prefix="ff-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server(short_tmp):
    require("redis-server")
    server = RedisServer(short_tmp / "redis", short_tmp / "redis.log").start()
    yield server
    server.stop()


@pytest.fixture
def redis_client(redis_server):
    r = redis_server.client()
    r.flushall()
    return r


@dataclass
class Tokens:
    client: str
    client2: str
    worker: str
    admin: str


def _make_tokens(r) -> Tokens:
    return Tokens(*(create_token(r, role) for role in ("client", "client", "worker", "admin")))


@pytest.fixture
def tokens(redis_client) -> Tokens:
    return _make_tokens(redis_client)


@pytest.fixture
def settings(redis_server, redis_client, tmp_path) -> Settings:
    return Settings(redis_url=redis_server.url, storage=f"file://{tmp_path / 'storage'}", lease_s=2.0,
                    claim_wait_s=0.5, max_upload_bytes=5 * 1024 * 1024, max_frames=1000)


@pytest.fixture
def app(settings):
    return create_app(settings, background=False)


@pytest.fixture
def http(app):
    return app.test_client()


@pytest.fixture(scope="session")
def scenes(short_tmp):
    """Scenes generated once per session with the real Blender, by options."""
    made: dict[tuple[str, ...], Path] = {}

    def get(*options: str) -> Path:
        require_blender()
        if options not in made:
            folder = short_tmp / "scenes" / str(len(made))
            extra = ["--texture", str(folder / "textures" / "tex.png")] if "--no-texture" not in options else []
            opts = [o for o in options if o != "--no-texture"]
            made[options] = make_scene(folder / "scene.blend", *opts, *extra)
        return made[options]

    return get


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


def _run_cluster(c: Cluster, request):
    yield c
    c.stop()
    if getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed:
        print(c.logs())


def _cluster_env() -> dict[str, str]:
    return {"FRAMEFARM_LEASE_S": "4", "FRAMEFARM_HEARTBEAT_S": "1", "FRAMEFARM_CLAIM_WAIT_S": "5"}


@pytest.fixture
def cluster(redis_server, redis_client, tokens, tmp_path, request):
    require_blender()
    yield from _run_cluster(Cluster(tmp_path, redis_server, tokens, _cluster_env()), request)


def _own_cluster(short_tmp: Path, root: Path, request):
    require_blender()
    require("redis-server")
    folder = Path(tempfile.mkdtemp(prefix="redis-", dir=short_tmp))
    server = RedisServer(folder, folder / "redis.log").start()
    try:
        yield from _run_cluster(Cluster(root, server, _make_tokens(server.client()), _cluster_env()), request)
    finally:
        server.stop()


@pytest.fixture
def own_cluster(short_tmp, tmp_path, request):
    """A cluster on a redis-server of its own, for tests that stop and restart Redis
    (the session's shared server must stay up for every other test)."""
    yield from _own_cluster(short_tmp, tmp_path, request)


@pytest.fixture(scope="module")
def module_cluster(short_tmp, tmp_path_factory, request):
    """A cluster on a redis-server of its own shared by a module's tests (one farm, started
    once: tests/system/test_dashboard.py)."""
    yield from _own_cluster(short_tmp, tmp_path_factory.mktemp("cluster"), request)


@pytest.fixture(scope="session")
def gcs_emulator(short_tmp):
    """A real gcp-storage-emulator process with one bucket, and a test service-account key."""
    from gcstools import Emulator

    emulator = Emulator(short_tmp / "gcs").start()
    yield emulator
    emulator.stop()


@pytest.fixture
def gcs(gcs_emulator, monkeypatch):
    """The emulator, with this process's environment pointed at it (as a deployment's would be)."""
    for name, value in gcs_emulator.client_env().items():
        monkeypatch.setenv(name, value)
    return gcs_emulator


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)
