"""Commands that run farm processes: worker, gateway, up, and token management."""
from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from pathlib import Path

import redis

from framefarm.client import config
from framefarm.common import home

from .localfarm import GatewayProcess, RedisServer, ServiceError, WorkerProcess
from .usage import UsageError

log = logging.getLogger("framefarm.up")


def _on_stop_signals(callback) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: callback())


def worker(args) -> int:
    from framefarm.worker.agent import Agent
    from framefarm.worker.render import RenderError, probe_blender

    if args.slots < 1:
        raise UsageError("--slots must be 1 or more")
    from framefarm.worker.blender_fetch import BlenderFetchError, fetch_pinned

    api = config.resolve(args.gateways, args.token).api()
    workdir = Path(args.workdir) if args.workdir else home.home() / "worker"
    try:
        blender = args.blender or "blender"
        if blender == "farm":  # the build the farm publishes, checked against its SHA-256
            blender = str(fetch_pinned(api, workdir / "blender"))
        info = probe_blender(blender)
        agent = Agent(api, info, workdir=workdir, device=args.device, slots=args.slots, name=args.name)
    except RenderError as e:
        print(f"framefarm worker: {e.message}", file=sys.stderr)
        return 1
    except BlenderFetchError as e:
        print(f"framefarm worker: {e}", file=sys.stderr)
        return 1
    _on_stop_signals(agent.stop.set)
    agent.run()
    return 0


def gateway(args) -> int:
    if args.bind:
        os.environ["FRAMEFARM_BIND"] = args.bind
    if args.public_url:
        os.environ["FRAMEFARM_PUBLIC_URL"] = args.public_url
    extra = [a for a in args.gunicorn_args if a != "--"]
    argv = [sys.executable, "-m", "gunicorn", "-c", "python:framefarm.gateway.gunicorn_conf", *extra,
            "framefarm.gateway.wsgi:app"]
    os.execv(sys.executable, argv)


def _farm_redis() -> redis.Redis:
    url = os.environ.get("FRAMEFARM_REDIS_URL") or home.read_json(home.farm_config_path()).get("redis_url")
    if not url:
        raise UsageError("no farm database: set FRAMEFARM_REDIS_URL, or start a local farm with `framefarm up`")
    from framefarm.gateway.redisconn import redis_from_url

    return redis_from_url(url, socket_connect_timeout=3)


def token_create(args) -> int:
    from framefarm.gateway.auth import create_token

    try:
        print(create_token(_farm_redis(), args.role, args.name))
    except redis.ConnectionError as e:
        print(f"framefarm: cannot reach the farm's Redis: {e}", file=sys.stderr)
        return 1
    return 0


def token_revoke(args) -> int:
    from framefarm.gateway.auth import revoke_token

    token = sys.stdin.readline().strip()
    if not revoke_token(_farm_redis(), token):
        print("framefarm: no such token", file=sys.stderr)
        return 1
    return 0


def blender_publish(args) -> int:
    """Publish a Blender tarball in the farm's storage for workers run with `--blender farm`."""
    from framefarm.gateway.blender_builds import publish
    from framefarm.gateway.storage import StorageError, open_storage

    tarball = Path(args.tarball)
    if not tarball.is_file():
        raise UsageError(f"{tarball} is not a file")
    storage = os.environ.get("FRAMEFARM_STORAGE")
    if not storage and home.farm_config_path().exists():  # the local farm of `framefarm up`
        storage = f"file://{home.home() / 'storage'}"
    if not storage:
        raise UsageError("no farm storage: set FRAMEFARM_STORAGE as the gateways have it, "
                         "or start a local farm with `framefarm up`")
    try:
        record = publish(_farm_redis(), open_storage(storage), tarball, args.version)
    except ValueError as e:
        raise UsageError(str(e)) from None
    except (StorageError, redis.ConnectionError) as e:
        print(f"framefarm: publishing failed: {e}", file=sys.stderr)
        return 1
    print(f"published Blender {record['version']} ({record['size']} bytes, sha256 {record['sha256']}); "
          f"workers started with --blender farm will use it")
    return 0


def _tokens(r: redis.Redis) -> tuple[str, str]:
    """Reuse the local farm's tokens across restarts (Redis keeps them with AOF)."""
    from framefarm.gateway.auth import create_token, digest
    from framefarm.gateway.keys import token as token_key

    saved = home.read_json(home.farm_config_path())
    client = home.read_json(home.client_config_path()).get("token")
    if not client or not r.exists(token_key(digest(client))):
        client = create_token(r, "client", "local-client")
    worker = saved.get("worker_token")
    if not worker or not r.exists(token_key(digest(worker))):
        worker = create_token(r, "worker", "local-workers")
    return client, worker


def up(args) -> int:
    """The whole farm in the foreground; Ctrl-C or SIGTERM stops everything it started."""
    root = home.home()
    logs_dir = root / "logs"
    stopping = threading.Event()
    _on_stop_signals(stopping.set)
    started: list = []
    try:
        redis_server = RedisServer(root / "redis", logs_dir / "redis.log").start()
        started.append(redis_server)
        client_token, worker_token = _tokens(redis_server.client())
        home.write_private_json(home.farm_config_path(), {"redis_url": redis_server.url,
                                                          "worker_token": worker_token})
        gw = GatewayProcess(args.port, redis_server.url, f"file://{root / 'storage'}", logs_dir / "gateway.log")
        started.append(gw.start())
        home.write_private_json(home.client_config_path(), {"gateways": [gw.url], "token": client_token})
        workers = [WorkerProcess(f"local-{i}", [gw.url], worker_token, root / "workers" / str(i),
                                 logs_dir / f"worker-{i}.log", blender=args.blender, device=args.device)
                   for i in range(args.workers)]
        for w in workers:
            started.append(w.start())
    except ServiceError as e:
        print(f"framefarm up: {e}", file=sys.stderr)
        _stop_all(started)
        return 1
    print(f"Framefarm is up: gateway {gw.url}, {args.workers} worker(s), data and logs in {root}\n"
          f"Submit with: framefarm submit SCENE.blend --frames 1-10 --wait\n"
          f"Stop with Ctrl-C.", flush=True)
    code = 0
    while not stopping.wait(1.0):
        if not redis_server.alive() or not gw.alive():
            dead = "redis" if not redis_server.alive() else "the gateway"
            print(f"framefarm up: {dead} stopped unexpectedly; see {logs_dir}", file=sys.stderr)
            code = 1
            break
        for w in workers:
            if not w.alive():
                log.warning("%s exited (%s); restarting it. Log: %s", w.name, w.proc.returncode, w.log_path)
                w.start()
    print("stopping the farm...", file=sys.stderr, flush=True)
    _stop_all(started)
    return code


def _stop_all(started: list) -> None:
    """Workers first (they hand their parts back through the gateway), then the
    gateway, then Redis (which writes its AOF on the way out)."""
    workers = [p for p in started if isinstance(p, WorkerProcess)]
    for w in workers:
        w.signal(signal.SIGTERM)
    for proc in workers + [p for p in reversed(started) if not isinstance(p, WorkerProcess)]:
        proc.stop(timeout=30)
