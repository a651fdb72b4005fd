"""Draining a worker (an admin's action): it finishes the parts it holds and is handed no more
(lua/claim.lua answers a drained worker's claims with nothing), until it is undrained. The
worker keeps its registration, heartbeats and claims as before, so undraining it puts it back
to work at once; a worker that restarts registers anew, undrained.

Also the admin's view of the workers: each live worker's registration with what it is doing.
"""
from __future__ import annotations

from typing import Any, cast

from . import keys, workers
from .errors import ApiError
from .farm import Farm


def _known(farm: Farm, wid: str) -> None:
    if not farm.redis.exists(keys.worker(wid)):
        raise workers.unknown(wid)


def set_drained(farm: Farm, wid: str, drained: bool) -> None:
    _known(farm, wid)
    if drained:
        farm.redis.hset(keys.worker(wid), "drained", "1")
    else:
        farm.redis.hdel(keys.worker(wid), "drained")
        farm.redis.publish(keys.EVENTS, "work")  # its waiting claim looks again now


def view(farm: Farm, wid: str) -> dict[str, Any]:
    """One worker as GET /v1/workers/{wid} shows it (404 once it is gone)."""
    found = [w for w in listing(farm) if w["id"] == wid]
    if not found:
        raise ApiError(404, "unknown_worker", f"worker {wid} is not registered (or expired)")
    return found[0]


def listing(farm: Farm) -> list[dict[str, Any]]:
    """The live workers, each with the parts it holds now, its counts of parts done and failed
    and the jobs it is kept away from (lua/complete.lua and fail.lua keep them)."""
    live = workers.live(farm)
    pipe = farm.redis.pipeline()
    for w in live:
        pipe.smembers(keys.worker_parts(w["id"]))
        pipe.smembers(keys.worker_blocked(w["id"]))
        pipe.zscore(keys.WORKERS, w["id"])
    found = pipe.execute()
    out = []
    for i, w in enumerate(live):
        held, kept_away, seen = cast(tuple[set[str], set[str], float | None], found[3 * i:3 * i + 3])
        out.append({
            "id": w["id"], "name": w.get("name", w["id"]), "blender": w.get("blender", ""),
            "blender_version": f"{int(w.get('blender_version', 0)) // 100}.{int(w.get('blender_version', 0)) % 100}",
            "device": w.get("device", ""), "devices": [d for d in w.get("devices", "").split(",") if d],
            "slots": int(w.get("slots", 1)), "sandbox": w.get("sandbox", "unknown"),
            "state": "drained" if w.get("drained") and not held else "rendering" if held else "idle",
            "drained": bool(w.get("drained")), "parts": sorted(held),
            "last_seen": int(seen if seen is not None else w.get("last_seen") or 0),
            "parts_done": int(w.get("parts_done", 0)), "parts_failed": int(w.get("parts_failed", 0)),
            "kept_away_from": sorted(kept_away),
        })
    return sorted(out, key=lambda w: (w["name"], w["id"]))
