"""Helpers for tests that drive the gateway's HTTP API through Flask's test client.

Each helper makes one call the way the CLI or a worker agent would and asserts it
worked, so a test reads as the farm's protocol. `expect_error` checks the one shape
every refusal shares, and `unchanged` checks that a refused request left the farm
exactly as it was: every Redis key and every stored object, byte for byte.
Test modules import the `scene_bytes` and `scene_sha` fixtures from here.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterator

import pytest

from farmtools import sha256, zip_bytes
from framefarm.gateway import keys
from framefarm.gateway.farm import Farm

MAIN = "scene.blend"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def lease(part: dict[str, Any], token: str | None = None) -> dict[str, str]:
    """The headers of a call about a claimed part: its lease token (or `token` instead) and the
    worker the lease is bound to."""
    return {"X-Lease-Token": part["token"] if token is None else token, "X-Worker-Id": part["worker"]}


def farm_of(http) -> Farm:
    return http.application.extensions["framefarm"]


def expect_error(resp, status: int, code: str | None = None) -> dict[str, Any]:
    """The response is `{"error": {"code", "message"}}` with this status; returns the error."""
    assert resp.status_code == status, (resp.status_code, resp.get_data(as_text=True)[:500])
    body = resp.get_json()
    assert isinstance(body, dict) and list(body) == ["error"], body
    err = body["error"]
    assert isinstance(err.get("code"), str) and isinstance(err.get("message"), str) and err["message"], err
    if code is not None:
        assert err["code"] == code, err
    return err


def snapshot(farm: Farm) -> tuple[dict[str, bytes], dict[str, int]]:
    """All of the farm's state: every Redis value and every stored object (temporary files included).
    Not the requests counted per token (quotas.py): every request counts, refused or not; nor what
    a live gateway's own loops rewrite as time passes (its announcement, the clean-up lock)."""
    r = farm.redis
    values = {k: r.dump(k) for k in sorted(r.keys("*"))
              if not k.startswith(keys.REQUEST_COUNTS) and k not in (keys.GATEWAYS, keys.CLEANUP_LOCK)}
    root: Path = farm.storage.root
    files = {str(p.relative_to(root)): p.stat().st_size for p in sorted(root.rglob("*")) if p.is_file()}
    return values, files


@contextlib.contextmanager
def unchanged(http) -> Iterator[None]:
    farm = farm_of(http)
    before = snapshot(farm)
    yield
    after = snapshot(farm)
    assert after[1] == before[1], "storage changed"
    assert after[0] == before[0], "redis changed: " + ", ".join(
        k for k in set(before[0]) ^ set(after[0]) | {k for k in before[0] if before[0][k] != after[0].get(k)})


def upload(http, token: str, data: bytes) -> str:
    sha = sha256(data)
    resp = http.put(f"/v1/files/{sha}", data=data, headers=bearer(token))
    assert resp.status_code in (200, 201), resp.get_json()
    return sha


def job_body(scene_sha: str, **fields: Any) -> dict[str, Any]:
    """A valid submission for one uploaded .blend; `fields` override or add to it."""
    return {"manifest": {MAIN: scene_sha}, "main": MAIN, "frames": "1-4", "chunk": 2, "name": "test",
            **fields}


def submit(http, token: str, scene_sha: str, **fields: Any) -> dict[str, Any]:
    resp = http.post("/v1/jobs", json=job_body(scene_sha, **fields), headers=bearer(token))
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()


def get_job(http, token: str, job_id: str, **params: str) -> dict[str, Any]:
    resp = http.get(f"/v1/jobs/{job_id}", query_string=params, headers=bearer(token))
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()


def register_worker(http, token: str, version: str = "3.4.1", name: str = "w", slots: int = 1) -> str:
    resp = http.post("/v1/workers", json={"name": name, "blender_version": version, "slots": slots},
                     headers=bearer(token))
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()["id"]


def claim(http, token: str, wid: str) -> dict[str, Any] | None:
    """One claim that does not wait: the leased part, or None when there is no work for this worker."""
    resp = http.post(f"/v1/workers/{wid}/claim", json={"wait": 0}, headers=bearer(token))
    assert resp.status_code in (200, 204), resp.get_json()
    return resp.get_json()["part"] if resp.status_code == 200 else None


def heartbeat(http, token: str, wid: str, *parts: dict[str, Any]) -> list[str]:
    held = [{"id": p["id"], "token": p["token"]} for p in parts]
    resp = http.post(f"/v1/workers/{wid}/heartbeat", json={"parts": held}, headers=bearer(token))
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()["abandon"]


def frames_zip(frames: list[int], ext: str = ".png") -> bytes:
    return zip_bytes({f"{f:04d}{ext}": f"frame {f}".encode() for f in frames})


def put_result(http, token: str, part: dict[str, Any], data: bytes | None = None, lease_token: str | None = None):
    data = frames_zip(part["frames"]) if data is None else data
    return http.put(f"/v1/parts/{part['id']}/result", data=data,
                    headers={**bearer(token), **lease(part, lease_token)})


def fail_part(http, token: str, part: dict[str, Any], message: str, deterministic: bool = False):
    return http.post(f"/v1/parts/{part['id']}/failure", json={"message": message, "deterministic": deterministic},
                     headers={**bearer(token), **lease(part)})


def part_fields(http, pid: str) -> dict[str, str]:
    return farm_of(http).redis.hgetall(keys.part(pid))


@pytest.fixture
def scene_bytes(scenes) -> bytes:
    """A real scene saved by this machine's Blender (3.4), untextured so it is one file."""
    return scenes("--no-texture").read_bytes()


@pytest.fixture
def scene_sha(http, tokens, scene_bytes) -> str:
    return upload(http, tokens.client, scene_bytes)
