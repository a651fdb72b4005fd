"""Helpers for the fault-tolerance proofs (tests/test_chaos.py, test_failover.py,
test_contention.py) and bench/failover.py.

They watch the farm the way an operator would -- part state in Redis, the
processes on the machine, the final zip -- and kill processes the way machines
die, so the tests and the benchmark measure the same events the same way.
"""
from __future__ import annotations

import os
import signal
import socket
import threading
import time
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import redis

from farmtools import pid_alive
from framefarm.gateway.localfarm import Process
from framefarm.common.api import FarmAPI
from framefarm.common.http import Client
from framefarm.client.submission import TERMINAL
from framefarm.gateway import keys


def fields(r: redis.Redis, key: str) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in r.hgetall(key).items()}


def worker_ids(r: redis.Redis, name: str) -> list[str]:
    """Ids registered under a worker's name (a worker that re-registers gets a new id)."""
    ids = [w.decode() for w in r.zrange(keys.WORKERS, 0, -1)]
    return [wid for wid in ids if r.hget(keys.worker(wid), "name") == name.encode()]


def leases_of(r: redis.Redis, name: str) -> list[tuple[str, str]]:
    """(part id, lease token) of every part currently leased to the worker called `name`."""
    held = []
    for wid in worker_ids(r, name):
        for raw in r.smembers(f"{keys.worker(wid)}:parts"):
            part = fields(r, keys.part(raw.decode()))
            if part.get("state") == "leased" and part.get("worker") == wid:
                held.append((raw.decode(), part["token"]))
    return held


def children(pid: int) -> list[int]:
    """Live child processes of `pid`. Only its own /proc entries are read: scanning
    every process's command line can stall on a stranger's busy process."""
    found = []
    for listing in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            found += [int(c) for c in listing.read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return [c for c in found if pid_alive(c)]


def rendering(r: redis.Redis, worker: Process) -> tuple[str, str] | None:
    """The part a worker holds while its Blender (its child process) is running:
    a kill now lands in the middle of the part, not between parts."""
    held = leases_of(r, worker.name)
    return held[0] if held and children(worker.pid) else None


def still_leased(r: redis.Redis, pid: str, token: str) -> bool:
    part = r.hmget(keys.part(pid), "state", "token")
    return part == [b"leased", token.encode()]


def wait_requeued(r: redis.Redis, pid: str, token: str, timeout: float) -> float:
    """Poll until the lease `token` on `pid` is gone (the part was queued again,
    possibly already claimed by another worker); returns time.monotonic() then."""
    deadline = time.monotonic() + timeout
    while still_leased(r, pid, token):
        if time.monotonic() > deadline:
            raise AssertionError(f"part {pid} still leased under token {token} after {timeout:.0f}s")
        time.sleep(0.01)
    return time.monotonic()


def parts_done(r: redis.Redis, job_id: str) -> int:
    return int(r.hget(keys.job(job_id), "parts_done") or 0)


def part_states(r: redis.Redis, job_id: str) -> list[dict[str, str]]:
    n = int(r.hget(keys.job(job_id), "parts_total"))
    return [fields(r, keys.part(keys.part_id(job_id, i))) for i in range(n)]


def kill_machine(proc: Process) -> float:
    """SIGKILL a process and everything in its process group at once, as when its
    machine dies: for a gateway, the gunicorn master and all its workers.
    Returns time.monotonic() just before the signal (clients may notice before
    this call returns)."""
    sent = time.monotonic()
    os.killpg(proc.pid, signal.SIGKILL)
    proc.proc.wait()
    return sent


def blender_rendering(worker: Process) -> bool:
    """The worker's Blender has begun rendering a part's frames (it said `Fra:` in a part's log):
    the part was handed to Blender, which is no longer only starting or loading the scene."""
    workdir = Path(worker.argv[worker.argv.index("--workdir") + 1])
    return any("Fra:" in log.read_text(errors="replace") for log in workdir.rglob("blender.log"))


def blender_gone(worker: Process) -> bool:
    """No live child left under a (possibly stopped) worker, and no process anywhere else
    working in its folder: its Blender has exited, sandbox and all (a sandbox's own processes
    run in a session of their own, and one left behind is reparented to init, not the worker)."""
    workdir = worker.argv[worker.argv.index("--workdir") + 1]
    from farmtools import processes_mentioning

    return not children(worker.pid) and [p for p in processes_mentioning(workdir) if p != worker.pid] == []


def wait_terminal(api: FarmAPI, job_id: str, timeout: float) -> dict:
    """Long-poll the job until it ends, failing after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    job = api.job(job_id)
    while job["status"] not in TERMINAL:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"job {job_id} still {job['status']} after {timeout:.0f}s: {job}")
        job = api.job(job_id, wait=min(left, 10), rev=job["rev"])
    return job


def check_archive(path: Path, frames: list[int], size: tuple[int, int]) -> None:
    """The zip holds each expected frame exactly once, each a decodable image of `size`."""
    from PIL import Image

    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        assert len(names) == len(set(names)), f"duplicate entries: {sorted(names)}"
        assert sorted(names) == [f"{f:04d}.png" for f in frames]
        for name in names:
            with zf.open(name) as fh, Image.open(fh) as im:
                im.load()
                assert im.size == size, name


@dataclass(frozen=True)
class Attempt:
    url: str
    started: float  # time.monotonic()
    ended: float
    ok: bool  # a gateway answered with something other than 502/503/504


class TracingClient(Client):
    """The project's failover client, recording every attempt on every gateway,
    so a test can see exactly when it left a dead gateway."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.attempts: list[Attempt] = []
        self._active: Counter[str] = Counter()
        self._trace_lock = threading.Lock()

    def waiting_on(self, url: str) -> bool:
        """Whether a call to `url` is in flight now (a long-poll waiting there, say)."""
        with self._trace_lock:
            return self._active[url] > 0

    def _send(self, base, method, path, body, headers, timeout, stream):
        started = time.monotonic()
        ok = False
        with self._trace_lock:
            self._active[base] += 1
        try:
            resp = super()._send(base, method, path, body, headers, timeout, stream)
            ok = resp.status not in (502, 503, 504)
            return resp
        finally:
            with self._trace_lock:
                self._active[base] -= 1
                self.attempts.append(Attempt(base, started, time.monotonic(), ok))

    def failover(self, dead: str, after: float = float("-inf")) -> tuple[Attempt, Attempt]:
        """The first failed attempt on `dead` that ended after `after`, and the first
        successful attempt on another gateway that started after it."""
        with self._trace_lock:
            attempts = sorted(self.attempts, key=lambda a: a.ended)
        failed = next(a for a in attempts if a.url == dead and not a.ok and a.ended >= after)
        moved = min((a for a in attempts if a.url != dead and a.ok and a.started >= failed.ended),
                    key=lambda a: a.started)
        return failed, moved


def unresponsive_host() -> tuple[str, list[socket.socket]]:
    """A URL whose connects hang, as to a machine that died without a word: a
    listening socket with a backlog of zero, filled by one connection never accepted.
    Keep the returned sockets open while the URL is in use."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    filler = socket.create_connection(server.getsockname(), timeout=5)
    return f"http://127.0.0.1:{server.getsockname()[1]}", [server, filler]


def _started(pid: int) -> str | None:
    """The start time of a live process (field 22 of /proc/PID/stat), which tells
    a process apart from a later one that reuses its pid; None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    return None if fields[0] == "Z" else fields[19]


def blenders_among(pids) -> list[int]:
    """Those of `pids` that are Blender (the binary, also inside the sandbox's bwrap)."""
    found = []
    for pid in pids:
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() == "blender":
                found.append(pid)
        except OSError:  # gone meanwhile
            continue
    return found


def signal_burst(pid: int, count: int = 300) -> None:
    """SIGTERM and SIGINT in turn, as fast as the loop goes (a service manager signalling
    both the process group and the process, an impatient Ctrl-C); stops once it is gone."""
    for n in range(count):
        try:
            os.kill(pid, signal.SIGINT if n % 2 else signal.SIGTERM)
        except ProcessLookupError:
            return


class Family:
    """A process and every descendant it had at any moment it was watched, so a test
    can prove that none of them outlives it (Blender under a worker, gunicorn's
    workers under its master, everything under `framefarm up`)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.members: dict[int, str] = {}
        self.look()

    def look(self) -> None:
        from farmtools import descendants

        for pid in {self.pid} | descendants(self.pid):
            started = _started(pid)
            if started is not None:
                self.members.setdefault(pid, started)

    def alive(self) -> list[int]:
        return [pid for pid, started in self.members.items() if _started(pid) == started]

    def wait_exit(self, proc: "Process", bound: float, what: str, since: float | None = None) -> float:
        """Watch the tree until `proc` exits; fail if that is more than `bound` seconds after
        `since` (a time.monotonic() value; default now). Returns the seconds it took."""
        start = time.monotonic() if since is None else since
        assert proc.proc is not None
        while proc.proc.poll() is None:
            self.look()
            if time.monotonic() - start > bound:
                raise AssertionError(f"{what} still running {bound:.0f}s after being told to stop: "
                                     f"{proc.tail()}")
            time.sleep(0.05)
        return time.monotonic() - start

    def wait_gone(self, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while self.alive():
            if time.monotonic() > deadline:
                raise AssertionError(f"processes left behind by {what}: {self.alive()}")
            time.sleep(0.05)
