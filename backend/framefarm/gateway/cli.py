"""The gateway's commands: `framefarm gateway`, `up`, `token` and `blender publish`.

They join the `framefarm` command through this distribution's ``framefarm.commands``
entry points (see framefarm.cli.main), so an artist's or a render node's installation,
which has no Flask, gunicorn or Redis, does not offer them. Flask and Redis are imported
only by the command that runs, so `framefarm submit` stays quick to start.
"""
from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from framefarm.cli.usage import ROLE_COMMANDS, UsageError
from framefarm.common import home
from framefarm.common.procs import on_stop_signals

if TYPE_CHECKING:
    import redis

    from .localfarm import Process

log = logging.getLogger("framefarm.up")

def add_gateway(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("gateway", help=ROLE_COMMANDS["gateway"][1])
    p.add_argument("--bind", default=None, help="host:port (default FRAMEFARM_BIND or 127.0.0.1:8400)")
    p.add_argument("--public-url", default=None, help="URL clients use to reach this gateway (default "
                   "FRAMEFARM_PUBLIC_URL); signed download links point there")
    p.add_argument("--certfile", default=None, help="serve HTTPS with this PEM certificate (chain) "
                   "(default FRAMEFARM_CERTFILE); needs --keyfile")
    p.add_argument("--keyfile", default=None, help="the certificate's PEM private key (default FRAMEFARM_KEYFILE)")
    p.add_argument("gunicorn_args", nargs=argparse.REMAINDER, help="extra gunicorn arguments after --")
    p.set_defaults(func=gateway, default_log_level="INFO")


def add_up(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("up", help=ROLE_COMMANDS["up"][1])
    p.add_argument("--port", type=int, default=8400)
    p.add_argument("--workers", type=int, default=1,
                   help="local worker processes (one takes `framefarm worker --slots auto`, several one slot each)")
    p.add_argument("--blender", default=None)
    p.add_argument("--device", default="auto")
    p.set_defaults(func=up, default_log_level="INFO")


def add_blender(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("blender", help=ROLE_COMMANDS["blender"][1])
    bsub = p.add_subparsers(dest="blender_command", required=True)
    b = bsub.add_parser("publish", help="store a Blender tarball for workers run with --blender farm "
                                        "(needs FRAMEFARM_REDIS_URL and FRAMEFARM_STORAGE, as the gateways have them)")
    b.add_argument("tarball", help="a Blender build as a .tar.xz/.tar.gz (Blender's own Linux tarballs work)")
    b.add_argument("--version", required=True, help="its Blender version, e.g. 4.2.1")
    b.set_defaults(func=blender_publish)


def add_token(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("token", help=ROLE_COMMANDS["token"][1])
    tsub = p.add_subparsers(dest="token_command", required=True)
    t = tsub.add_parser("create", help="create a token; printed once, stored hashed")
    t.add_argument("--role", required=True, choices=["client", "worker", "admin"])
    t.add_argument("--name", default="", help="a label for the token")
    t.set_defaults(func=token_create)
    t = tsub.add_parser("revoke", help="revoke a token (read from standard input)")
    t.set_defaults(func=token_revoke)


def gateway(args: argparse.Namespace) -> int:
    # Passed on in the environment: gunicorn_conf.py and every gateway process read their settings there.
    for name in ("bind", "public_url", "certfile", "keyfile"):
        if getattr(args, name):
            os.environ[f"FRAMEFARM_{name.upper()}"] = getattr(args, name)
    for name in ("certfile", "keyfile"):  # a typo here would only show as gunicorn's "worker failed to boot"
        path = os.environ.get(f"FRAMEFARM_{name.upper()}")
        if path and not os.access(path, os.R_OK):
            raise UsageError(f"--{name} {path}: not a readable file")
    extra = [a for a in args.gunicorn_args if a != "--"]
    argv = [sys.executable, "-m", "gunicorn", "-c", "python:framefarm.gateway.gunicorn_conf", *extra,
            "framefarm.gateway.wsgi:app"]
    os.execv(sys.executable, argv)


def _farm_redis() -> "redis.Redis":
    url = os.environ.get("FRAMEFARM_REDIS_URL") or home.read_json(home.farm_config_path()).get("redis_url")
    if not url:
        raise UsageError("no farm database: set FRAMEFARM_REDIS_URL, or start a local farm with `framefarm up`")
    from .redisconn import redis_from_url

    return redis_from_url(url, socket_connect_timeout=3)


def token_create(args: argparse.Namespace) -> int:
    import redis

    from .auth import create_token

    try:
        print(create_token(_farm_redis(), args.role, args.name))
    except redis.ConnectionError as e:
        print(f"framefarm: cannot reach the farm's Redis: {e}", file=sys.stderr)
        return 1
    return 0


def token_revoke(args: argparse.Namespace) -> int:
    from .auth import revoke_token

    token = sys.stdin.readline().strip()
    if not revoke_token(_farm_redis(), token):
        print("framefarm: no such token", file=sys.stderr)
        return 1
    return 0


def blender_publish(args: argparse.Namespace) -> int:
    """Publish a Blender tarball in the farm's storage for workers run with `--blender farm`."""
    import redis

    from .blender_builds import publish
    from .storage import StorageError, open_storage

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


def _tokens(r: "redis.Redis") -> tuple[str, str]:
    """Reuse the local farm's tokens across restarts (Redis keeps them with AOF)."""
    from .auth import create_token, digest
    from .keys import token as token_key

    saved = home.read_json(home.farm_config_path())
    client = home.read_json(home.client_config_path()).get("token")
    if not client or not r.exists(token_key(digest(client))):
        client = create_token(r, "client", "local-client")
    worker = saved.get("worker_token")
    if not worker or not r.exists(token_key(digest(worker))):
        worker = create_token(r, "worker", "local-workers")
    return client, worker


def up(args: argparse.Namespace) -> int:
    """The whole farm in the foreground; Ctrl-C or SIGTERM stops everything it started
    (a second one: at once), within bounds; docs/operations.md."""
    from .localfarm import GatewayProcess, RedisServer, ServiceError, WorkerProcess

    if args.workers > 0 and importlib.util.find_spec("framefarm.worker") is None:
        raise UsageError("local workers need the framefarm-worker package, which is not installed: "
                         "pip install framefarm-worker, or run `framefarm up --workers 0`")
    root = home.home()
    logs_dir = root / "logs"
    stopping, hurry = threading.Event(), threading.Event()
    on_stop_signals(stopping.set, hurry.set)
    started: list[Process] = []

    def start(proc: "Process") -> "Process":
        proc.abort = stopping  # a stop signal while it starts ends the wait for it at once
        started.append(proc)
        return proc.start()

    try:
        redis_server = RedisServer(root / "redis", logs_dir / "redis.log")
        start(redis_server)
        client_token, worker_token = _tokens(redis_server.client())
        home.write_private_json(home.farm_config_path(), {"redis_url": redis_server.url,
                                                          "worker_token": worker_token})
        gw = GatewayProcess(args.port, redis_server.url, f"file://{root / 'storage'}", logs_dir / "gateway.log")
        start(gw)
        home.write_private_json(home.client_config_path(), {"gateways": [gw.url], "token": client_token})
        # One local worker takes its `--slots auto`; several already render that many parts at
        # once on this machine's cores, so each takes one slot.
        slots = None if args.workers == 1 else 1
        workers = [WorkerProcess(f"local-{i}", [gw.url], worker_token, root / "workers" / str(i),
                                 logs_dir / f"worker-{i}.log", blender=args.blender, device=args.device,
                                 slots=slots)
                   for i in range(args.workers)]
        for w in workers:
            start(w)
    except ServiceError as e:
        print(f"framefarm up: {e}", file=sys.stderr)
        _stop_all(started, hurry)
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
                log.warning("%s exited (%s); restarting it. Log: %s", w.name, w.returncode, w.log_path)
                w.start()
    print("stopping the farm (Ctrl-C again to stop it now)...", file=sys.stderr, flush=True)
    _stop_all(started, hurry)
    return code


def _stop_all(started: "list[Process]", hurry: threading.Event) -> None:
    """Workers first (they hand their parts back through the gateway), then the
    gateway, then Redis (which writes its AOF on the way out); each within its bound."""
    from .localfarm import WorkerProcess, stop_in_order

    workers: list[Process] = [p for p in started if isinstance(p, WorkerProcess)]
    rest = [[p] for p in reversed(started) if not isinstance(p, WorkerProcess)]
    stop_in_order([workers, *rest], hurry=hurry)
