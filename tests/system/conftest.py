"""System-test fixtures: a real redis-server, gateway apps, gunicorn clusters, scenes.

They live here, not in tests/conftest.py, so that the unit tests never import the
gateway or start anything (see tests/unit/conftest.py)."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from clustertools import Cluster, Tokens, cluster_env, make_tokens
from farmtools import make_scene, require, require_blender
from framefarm.gateway.app import create_app
from framefarm.gateway.config import Settings
from framefarm.gateway.localfarm import RedisServer


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


@pytest.fixture
def tokens(redis_client) -> Tokens:
    return make_tokens(redis_client)


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


def _run_cluster(c: Cluster, request):
    yield c
    c.stop()
    if getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed:
        print(c.logs())


@pytest.fixture
def cluster(redis_server, redis_client, tokens, tmp_path, request):
    require_blender()
    yield from _run_cluster(Cluster(tmp_path, redis_server, tokens, cluster_env()), request)


def _own_cluster(short_tmp: Path, root: Path, request):
    require_blender()
    require("redis-server")
    folder = Path(tempfile.mkdtemp(prefix="redis-", dir=short_tmp))
    server = RedisServer(folder, folder / "redis.log").start()
    try:
        yield from _run_cluster(Cluster(root, server, make_tokens(server.client()), cluster_env()), request)
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
