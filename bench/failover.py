"""How long does the farm take to notice a death?

Runs a local farm (private redis-server with AOF, gunicorn gateways, `framefarm
worker` processes, Debian's Blender) at the default lease settings and, in rounds:

1. **Worker death -> requeue.** A worker is SIGKILLed while its Blender renders a
   part; the time until Redis shows the part no longer leased under its token
   (queued again, or already claimed by the other worker). Expected: what was
   left of the lease (lease - time since the last heartbeat) plus up to one
   reaper period (1 s). The same with SIGTERM, where the worker hands it back.
2. **Gateway death -> client failover.** Client threads long-poll the job through
   the project's failover client with the doomed gateway listed first; its whole
   process group is SIGKILLed. Per client: the time from the kill to the start of
   its first successful call on another gateway, and from its first failed call
   on the dead one to that moment.

    python bench/failover.py [--rounds 3] [--lease 10] [--heartbeat 3] [--clients 20]
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from farmtools import make_scene, wait_for  # noqa: E402  (shared with the tests)
from faulttools import TracingClient, kill_machine, rendering, wait_requeued  # noqa: E402

from framefarm.gateway.localfarm import GatewayProcess, RedisServer, WorkerProcess, free_port  # noqa: E402
from framefarm.common.api import FarmAPI  # noqa: E402
from framefarm.client.submission import submit_scene  # noqa: E402
from framefarm.gateway.auth import create_token  # noqa: E402


class Farm:
    """The processes of one local farm, all stopped by close()."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root, self.env, self.procs = root, env, []
        self.redis = self._keep(RedisServer(root / "redis", root / "redis.log").start())
        self.r = self.redis.client()
        self.client_token = create_token(self.r, "client")
        self.worker_token = create_token(self.r, "worker")
        self.stable = self.gateway()

    def _keep(self, proc):
        self.procs.append(proc)
        return proc

    def gateway(self) -> GatewayProcess:
        port = free_port()
        return self._keep(GatewayProcess(port, self.redis.url, f"file://{self.root / 'storage'}",
                                         self.root / f"gateway-{port}.log", env=self.env).start())

    def worker(self, name: str) -> WorkerProcess:
        return self._keep(WorkerProcess(name, [self.stable.url], self.worker_token, self.root / name,
                                        self.root / f"{name}.log", device="CPU", env=self.env).start())

    def close(self) -> None:
        for proc in reversed(self.procs):
            proc.stop(timeout=20)


def worker_round(farm: Farm, name: str, sig: int, timeout: float) -> float:
    """Seconds from `sig` on a worker in the middle of a part to that part's requeue."""
    victim = farm.worker(name)
    pid, token = wait_for(lambda: rendering(farm.r, victim), 120, f"{name} rendering a part")
    sent = time.monotonic()
    os.kill(victim.pid, sig)
    requeued = wait_requeued(farm.r, pid, token, timeout)
    victim.proc.wait()
    return requeued - sent


def gateway_round(farm: Farm, job_id: str, clients: int) -> list[tuple[float, float]]:
    """Per client: (kill -> first success elsewhere, first failed call -> first success elsewhere)."""
    doomed = farm.gateway()
    tracers = [TracingClient([doomed.url, farm.stable.url], farm.client_token, retry_for=60)
               for _ in range(clients)]
    stop = threading.Event()

    def follow(client: TracingClient) -> None:
        api = FarmAPI(client)
        rev = api.job(job_id)["rev"]
        while not stop.is_set():
            rev = api.job(job_id, wait=5, rev=rev)["rev"]

    threads = [threading.Thread(target=follow, args=(c,), daemon=True) for c in tracers]
    for t in threads:
        t.start()
    wait_for(lambda: all(c.waiting_on(doomed.url) for c in tracers), 30, "every client to wait on the gateway")
    killed = kill_machine(doomed)
    wait_for(lambda: all(any(a.url != doomed.url and a.ok and a.started > killed for a in c.attempts)
                         for c in tracers), 30, "every client to fail over")
    stop.set()
    out = []
    for c in tracers:
        failed, moved = c.failover(doomed.url, after=killed)
        out.append((moved.started - killed, moved.started - failed.ended))
    for t in threads:
        t.join(timeout=10)
    return out


def summary(values: list[float], unit: float = 1.0, fmt: str = "{:.2f}") -> str:
    shown = ", ".join(fmt.format(v * unit) for v in values)
    return (f"median {fmt.format(statistics.median(values) * unit)}, max {fmt.format(max(values) * unit)} "
            f"({shown})" if len(values) <= 10 else
            f"median {fmt.format(statistics.median(values) * unit)}, max {fmt.format(max(values) * unit)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--lease", type=float, default=10.0, help="FRAMEFARM_LEASE_S (default: the farm's, 10)")
    ap.add_argument("--heartbeat", type=float, default=3.0, help="FRAMEFARM_HEARTBEAT_S (default: the farm's, 3)")
    ap.add_argument("--clients", type=int, default=20)
    args = ap.parse_args()
    logging.getLogger("framefarm.client").setLevel(logging.ERROR)  # every failover would warn
    root = Path(tempfile.mkdtemp(prefix="ffbench-", dir="/tmp"))
    env = {"FRAMEFARM_LEASE_S": str(args.lease), "FRAMEFARM_HEARTBEAT_S": str(args.heartbeat)}
    farm = None
    try:
        scene = make_scene(root / "scene" / "shot.blend", "--animated", "--size", "64", "--samples", "64")
        farm = Farm(root, env)
        farm.worker("steady")
        api = FarmAPI(TracingClient([farm.stable.url], farm.client_token))
        job, _ = submit_scene(api, scene, frames="1-5000", chunk=8)
        kills, terms, gateways = [], [], []
        for n in range(args.rounds):
            kills.append(worker_round(farm, f"kill-{n}", signal.SIGKILL, args.lease + 5))
            terms.append(worker_round(farm, f"term-{n}", signal.SIGTERM, args.lease + 5))
            gateways += gateway_round(farm, job["id"], args.clients)
            print(f"round {n + 1}: worker SIGKILL -> requeue {kills[-1]:.2f} s, SIGTERM -> requeue "
                  f"{terms[-1] * 1000:.0f} ms, gateway SIGKILL -> {args.clients} clients failed over "
                  f"(slowest {max(g[0] for g in gateways[-args.clients:]) * 1000:.1f} ms)", flush=True)
        api.cancel(job["id"])
        print(json.dumps({"lease_s": args.lease, "heartbeat_s": args.heartbeat, "cpus": os.cpu_count(),
                          "worker_sigkill_requeue_s": kills, "worker_sigterm_requeue_s": terms,
                          "gateway_kill_to_failover_s": [g[0] for g in gateways],
                          "first_failure_to_failover_s": [g[1] for g in gateways]}))
        print(f"worker SIGKILL -> part requeued (lease {args.lease:g} s, heartbeat {args.heartbeat:g} s): "
              f"{summary(kills)} s")
        print(f"worker SIGTERM -> part requeued: {summary(terms, 1000, '{:.0f}')} ms")
        print(f"gateway SIGKILL -> clients on another gateway ({len(gateways)} client failovers): "
              f"{summary([g[0] for g in gateways], 1000, '{:.1f}')} ms after the kill; "
              f"{summary([g[1] for g in gateways], 1000, '{:.1f}')} ms after each client's first failed call")
    finally:
        if farm is not None:
            farm.close()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
