"""What the benchmarks share: a scratch folder whose processes are stopped at the end."""
from __future__ import annotations

import shutil
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

REPO = Path(__file__).resolve().parent.parent
# The tests' helpers (scene generation, polling) serve the benchmarks too.
sys.path.insert(0, str(REPO / "tests"))


@contextmanager
def scratch(prefix: str) -> Iterator[tuple[Path, list]]:
    """A fresh folder under /tmp (short: Redis's Unix socket lives in it) and a list
    of started processes; on leaving, the processes stop, newest first, and the folder goes."""
    root = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    procs: list = []
    try:
        yield root, procs
    finally:
        for proc in reversed(procs):
            proc.stop()
        shutil.rmtree(root, ignore_errors=True)


def local_farm(root: Path, procs: list, workers: int, slots: int = 1) -> dict[str, str]:
    """What `framefarm up` starts, in `root`: a private redis-server, a gunicorn gateway and
    `workers` CPU workers (registered before this returns); the client's environment for it."""
    from farmtools import wait_for
    from framefarm.gateway import keys
    from framefarm.gateway.auth import create_token
    from framefarm.gateway.localfarm import GatewayProcess, RedisServer, WorkerProcess, free_port

    redis_server = RedisServer(root / "redis", root / "redis.log").start()
    procs.append(redis_server)
    r = redis_server.client()
    worker_token, client_token = create_token(r, "worker"), create_token(r, "client")
    gw = GatewayProcess(free_port(), redis_server.url, f"file://{root / 'storage'}", root / "gateway.log")
    procs.append(gw.start())
    for i in range(workers):
        procs.append(WorkerProcess(f"bench-{i}", [gw.url], worker_token, root / f"w{i}", root / f"w{i}.log",
                                   device="CPU", slots=slots).start())
    wait_for(lambda: r.zcard(keys.WORKERS) == workers, 60, "the workers to register")
    return {"FRAMEFARM_GATEWAYS": gw.url, "FRAMEFARM_TOKEN": client_token, "FRAMEFARM_HOME": str(root / "home")}
