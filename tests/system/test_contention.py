"""200 workers claiming at once over HTTP: each of 5,000 parts is handed out exactly once.

The claim is one Lua step on Redis, so concurrency cannot split it; this proves it
end to end, through gunicorn's threads and the HTTP client, not only in the script.
"""
from __future__ import annotations

import threading
from collections import Counter

from faulttools import fields
from framefarm.gateway.localfarm import GatewayProcess, free_port
from framefarm.common.api import FarmAPI
from framefarm.common.http import Client, FarmError
from framefarm.client.submission import submit_scene
from framefarm.gateway import keys

CLAIMERS = 200
PARTS = 5000


def test_200_concurrent_claimers_get_each_of_5000_parts_exactly_once(redis_server, redis_client, tokens, scenes,
                                                                      tmp_path):
    scene = scenes("--animated", "--size", "48")
    gateway = GatewayProcess(free_port(), redis_server.url, f"file://{tmp_path / 'storage'}", tmp_path / "gw.log",
                             processes=2, threads=128, env={
                                 # No lease may run out during the test: a requeued part would be handed out twice;
                                 # nor a registration, while 200 workers register one by one before the first claims.
                                 "FRAMEFARM_LEASE_S": "600", "FRAMEFARM_WORKER_TIMEOUT_S": "600",
                                 "FRAMEFARM_MAX_FRAMES": str(PARTS),
                                 "FRAMEFARM_ACCESS_LOG": "/dev/null"}).start()
    try:
        client = FarmAPI(Client([gateway.url], tokens.client, discover=False))
        job, _ = submit_scene(client, scene, frames=f"1-{PARTS}", chunk=1)
        assert job["parts"]["total"] == PARTS
        worker_api = FarmAPI(Client([gateway.url], tokens.worker, discover=False, retry_for=30))
        wids = [worker_api.register({"name": f"claimer-{i}", "blender_version": "3.4.1"})["id"]
                for i in range(CLAIMERS)]

        start = threading.Barrier(CLAIMERS)
        lock = threading.Lock()
        got: list[tuple[str, str, str]] = []  # (part id, token, worker id)
        errors: list[str] = []
        in_flight, peak = 0, 0

        def claimer(wid: str) -> None:
            nonlocal in_flight, peak
            api = FarmAPI(Client([gateway.url], tokens.worker, discover=False, retry_for=30))
            start.wait()
            while True:
                with lock:
                    in_flight += 1
                    peak = max(peak, in_flight)
                try:
                    part = api.claim(wid, 0)
                except FarmError as e:
                    errors.append(f"{wid}: {e.message}")
                    return
                finally:
                    with lock:
                        in_flight -= 1
                if part is None:  # the queue is empty, and stays so: no lease can expire
                    return
                with lock:
                    got.append((part["id"], part["token"], wid))

        threads = [threading.Thread(target=claimer, args=(wid,)) for wid in wids]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=240)
        assert not any(t.is_alive() for t in threads), "claimers still running"
    finally:
        gateway.stop()

    assert not errors, errors[:5]
    assert peak >= CLAIMERS // 2, f"only {peak} claims were ever in flight at once"
    handed = Counter(pid for pid, _, _ in got)
    assert [pid for pid, n in handed.items() if n > 1] == []
    assert set(handed) == {keys.part_id(job["id"], i) for i in range(PARTS)}
    assert len({token for _, token, _ in got}) == PARTS
    # Redis agrees with what the claimers were told.
    pipe = redis_client.pipeline()
    for pid, _, _ in got:
        pipe.hmget(keys.part(pid), "state", "token", "worker")
    assert [tuple(v.decode() for v in row) for row in pipe.execute()] == [("leased", t, w) for _, t, w in got]
    assert redis_client.zcard(keys.LEASES) == PARTS
    assert fields(redis_client, keys.job(job["id"]))["status"] == "running"
    assert len({w for _, _, w in got}) > CLAIMERS // 2, "the parts went to a few claimers only"
