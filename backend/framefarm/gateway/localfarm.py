"""Starting and stopping the farm's processes on one machine.

Used by `framefarm up`, by the tests and by the benchmarks, so all three run
the farm the same way: a private redis-server (AOF on), gateways under
gunicorn, and `framefarm worker` processes, each logging to its own file.
Readiness is waited for by asking each service (Redis PING, /readyz), never by
sleeping a fixed time.

Stopping is bounded (docs/operations.md): each process gets SIGTERM and its own
grace period, then SIGKILL for its whole process group; told to hurry, a process
gets its "stop now" signal and NOW_S more. Every child also gets SIGTERM from the
kernel when the process that started it dies, however it dies (PDEATHSIG).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import redis

from framefarm.common.procs import die_with_parent


# How long a process told to hurry (a second stop signal) gets before SIGKILL.
NOW_S = 4.0


class ServiceError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Process:
    """A child process with its log file; stop() is graceful, then forceful.

    Each runs in a session (and process group) of its own, so a Ctrl-C in the terminal
    reaches only the parent, which stops its children in order, and SIGKILL to the
    group reaches every process the child started in it (gunicorn's workers)."""

    # Seconds between SIGTERM and SIGKILL: the process's own stop bound, and some room.
    grace_s = 10.0
    # What tells it to stop now, during a graceful stop (None: nothing does; it is killed after NOW_S).
    hurry_signal: int | None = signal.SIGTERM

    def __init__(self, name: str, argv: list[str], log_path: Path, env: dict[str, str] | None = None) -> None:
        self.name, self.argv, self.log_path = name, argv, log_path
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen | None = None
        # Set, it ends a wait for readiness at once: a stop signal while the farm starts.
        self.abort: threading.Event | None = None

    def start(self) -> "Process":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env=self.env, preexec_fn=die_with_parent(signal.SIGTERM), start_new_session=True)
        log.close()
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode if self.proc is not None else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def stop(self, timeout: float | None = None) -> int | None:
        """SIGTERM, then SIGKILL to its process group after `timeout` (its grace period by default)."""
        if self.proc is None:
            return None
        stop_in_order([[self]], grace=timeout)
        return self.proc.returncode

    def kill_group(self) -> None:
        """SIGKILL to the process and whatever is left in its process group."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)

    def wait_until(self, ready, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.abort is not None and self.abort.is_set():
                raise ServiceError(f"{self.name}: stopped while starting")
            if not self.alive():
                raise ServiceError(f"{self.name} exited while starting; see {self.log_path}:\n{self.tail()}")
            if ready():
                return
            time.sleep(0.05)
        raise ServiceError(f"{self.name} was not {what} after {timeout:.0f}s; see {self.log_path}")

    def tail(self, n: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except FileNotFoundError:
            return ""


class RedisServer(Process):
    """A private redis-server on a Unix socket (reachable only by this user), with AOF."""

    def __init__(self, data_dir: Path, log_path: Path, port: int = 0) -> None:
        exe = shutil.which("redis-server")
        if not exe:
            raise ServiceError("redis-server is not installed (Debian: apt-get install redis-server)")
        data_dir.mkdir(parents=True, exist_ok=True)
        self.socket = data_dir / "redis.sock"
        if len(str(self.socket)) > 100:
            raise ServiceError(f"the data folder path is too long for a Unix socket: {self.socket}")
        self.port = port
        super().__init__("redis", [exe, "--port", str(port), "--bind", "127.0.0.1",
                                   "--unixsocket", str(self.socket), "--unixsocketperm", "700",
                                   "--dir", str(data_dir), "--appendonly", "yes", "--appendfsync", "everysec",
                                   "--save", "", "--daemonize", "no"], log_path)

    @property
    def url(self) -> str:
        return f"unix://{self.socket}" if not self.port else f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)

    def start(self) -> "RedisServer":
        super().start()

        def ping() -> bool:
            try:
                return bool(self.client().ping())
            except (redis.ConnectionError, redis.BusyLoadingError, FileNotFoundError):
                return False

        self.wait_until(ping, 30, "answering")
        return self


class GatewayProcess(Process):
    # gunicorn's master lets requests in flight finish for GRACEFUL_S; a second signal
    # does not shorten that, so hurrying it is SIGKILL after NOW_S.
    GRACEFUL_S = 10
    grace_s = GRACEFUL_S + 5.0
    hurry_signal = None

    def __init__(self, port: int, redis_url: str, storage: str, log_path: Path, *, processes: int = 2,
                 threads: int = 32, waiters: int | None = None, env: dict[str, str] | None = None) -> None:
        """`waiters`: the long-polls one process may hold (FRAMEFARM_MAX_WAITERS); None: the
        packaged config's (gunicorn_conf.py: thousands, under gevent). `threads` serve only
        under FRAMEFARM_GUNICORN_WORKER_CLASS=gthread."""
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        super().__init__(f"gateway:{port}", [
            sys.executable, "-m", "gunicorn", "-c", "python:framefarm.gateway.gunicorn_conf",
            "--workers", str(processes), "--threads", str(threads), "--graceful-timeout", str(self.GRACEFUL_S),
            "framefarm.gateway.wsgi:app"], log_path, {
            "FRAMEFARM_BIND": f"127.0.0.1:{port}", "FRAMEFARM_PUBLIC_URL": self.url,
            "FRAMEFARM_REDIS_URL": redis_url, "FRAMEFARM_STORAGE": storage,
            **({"FRAMEFARM_MAX_WAITERS": str(waiters)} if waiters is not None else {}),
            # A farm on this machine: its webhooks may go to receivers on it or its network.
            "FRAMEFARM_WEBHOOK_ALLOW_PRIVATE": "1", **(env or {})})

    def start(self) -> "GatewayProcess":
        super().start()

        def ready() -> bool:
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=2) as resp:
                    return resp.status == 200
            except OSError:
                return False

        self.wait_until(ready, 60, "ready")
        return self


class WorkerProcess(Process):
    grace_s = 15.0  # the agent's own bound (agent.STOP_S) and room for Python to exit

    def __init__(self, name: str, gateways: list[str], token: str, workdir: Path, log_path: Path, *,
                 blender: str | None = None, device: str = "auto", slots: int | None = 1,
                 extra: list[str] | None = None, env: dict[str, str] | None = None) -> None:
        """`slots` None leaves it to the worker (`--slots auto`), as `framefarm up` does."""
        argv = [sys.executable, "-m", "framefarm.cli", "worker", "--name", name,
                "--workdir", str(workdir), "--device", device]
        if slots is not None:
            argv += ["--slots", str(slots)]
        for g in gateways:
            argv += ["--gateway", g]
        if blender:
            argv += ["--blender", blender]
        # The token travels in the environment, never on the command line (ps shows argv).
        super().__init__(name, argv + (extra or []), log_path, {"FRAMEFARM_TOKEN": token, **(env or {})})


def stop_in_order(groups: list[list[Process]], *, hurry: threading.Event | None = None,
                  grace: float | None = None) -> None:
    """Stop the processes group by group (all of one group at once): SIGTERM, then
    SIGKILL to each one's process group when its grace period (or `grace`) is over.
    Once `hurry` is set, each process still running gets its "stop now" signal and
    at most NOW_S more. Returns when every one of them has exited."""
    for group in groups:
        running = [p for p in group if p.alive()]
        for p in running:
            p.signal(signal.SIGTERM)
        now = time.monotonic()
        deadline = {p: now + (p.grace_s if grace is None else grace) for p in running}
        hurried = False
        while running:
            if hurry is not None and hurry.is_set() and not hurried:
                hurried = True
                for p in running:
                    if p.hurry_signal is not None:
                        p.signal(p.hurry_signal)
                    deadline[p] = min(deadline[p], time.monotonic() + NOW_S)
            for p in running:
                if time.monotonic() >= deadline[p]:
                    p.kill_group()
            running = [p for p in running if p.alive()]
            if running:
                time.sleep(0.05)  # Popen cannot wait for several processes at once
        for p in group:
            p.kill_group()  # anything it left in its group (a child it did not wait for)
            if p.proc is not None:
                p.proc.wait()
