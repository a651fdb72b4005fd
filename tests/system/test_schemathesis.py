"""schemathesis against a live gunicorn gateway: every operation of openapi.yaml, fed real ids.

Random ids stop at a 404, so the farm here is real and each generated request gets what a
real caller would hold: the client's jobs (one of them done, so its archive and signed
download answer), a registered worker, a part leased a moment ago with its lease token, the
uploaded scene's hash, and, for half of the result uploads, a zip of exactly the part's
frames. Only the parts of a request generated as valid are replaced; a part generated to
break the schema is sent as it is, and must be refused.

Every answer is checked by schemathesis (no 5xx, a documented status, content type, headers
and body valid against the spec; invalid data refused, 405 with Allow) and by one check of
our own: a request the spec accepts is never refused with a code the spec could have caught.
Hypothesis runs derandomized and each operation gets a bounded number of examples, so the
run is the same on every machine and takes about a minute.
"""
from __future__ import annotations

import hashlib
import itertools
import os
import subprocess
import sys
from collections import defaultdict
import tempfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import schemathesis
from schemathesis.config import SchemathesisConfig
from schemathesis.core.failures import Failure
from schemathesis.core.parameters import ParameterLocation
from schemathesis.transport.serialization import serialize_binary

from apitools import frames_zip
from farmtools import require, wait_for
from framefarm.gateway import blender_builds
from framefarm.gateway.auth import create_token
from framefarm.gateway.config import Settings
from framefarm.gateway.farm import Farm
from framefarm.gateway.localfarm import GatewayProcess, RedisServer, free_port

MAX_EXAMPLES = 12
ANSWERS: dict[str, set[int]] = defaultdict(set)  # operation -> statuses it answered in this run
# Codes for faults of shape; the spec describes every one, so a request it accepts never earns them.
SHAPE_CODES = {"bad_request", "bad_hash", "bad_version", "bad_size", "bad_upload_id", "bad_step", "bad_chunk",
               "bad_priority", "bad_name", "bad_idempotency_key", "unsupported_media_type"}

CONFIG = SchemathesisConfig.from_dict({
    "generation": {"mode": "all", "max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none"},
    "phases": {"examples": {"enabled": True}, "coverage": {"enabled": True}, "fuzzing": {"enabled": True},
               "stateful": {"enabled": False}},
    # Valid data is often refused for what a schema cannot say (files never uploaded, a stale lease):
    # `spec_accepted_is_not_refused_for_its_shape` below checks the part of that rule that holds.
    "checks": {"positive_data_acceptance": {"enabled": False}},
})


@dataclass
class LiveFarm:
    url: str
    farm: Farm
    client: str
    worker: str
    scene_sha: str
    wid: str = ""
    done_job: str = ""
    download: dict[str, str] = field(default_factory=dict)
    blender: dict[str, str] = field(default_factory=dict)
    lease: dict[str, Any] | None = None
    session: requests.Session = field(default_factory=requests.Session)
    results: itertools.count = field(default_factory=itertools.count)

    def call(self, method: str, path: str, token: str, **kw) -> requests.Response:
        return self.session.request(method, self.url + path, headers={"Authorization": f"Bearer {token}",
                                                                       **kw.pop("headers", {})}, timeout=60, **kw)

    def submit(self, frames: str = "1-40") -> dict:
        resp = self.call("POST", "/v1/jobs", self.client, json={"manifest": {"scene.blend": self.scene_sha},
                                                               "main": "scene.blend", "frames": frames, "chunk": 1})
        assert resp.status_code == 201, resp.text
        return resp.json()

    def worker_id(self) -> str:
        """Our worker's id, registered again if a generated request unregistered it."""
        if not self.wid or self.call("POST", f"/v1/workers/{self.wid}/heartbeat", self.worker,
                                     json={}).status_code == 404:
            resp = self.call("POST", "/v1/workers", self.worker, json={"blender_version": "3.4.1"})
            assert resp.status_code == 201, resp.text
            self.wid = resp.json()["id"]
        return self.wid

    def claim(self) -> dict[str, Any]:
        """A part leased to our worker a moment ago (a new job when the queue runs dry)."""
        for _ in range(3):
            resp = self.call("POST", f"/v1/workers/{self.worker_id()}/claim", self.worker, json={"wait": 0})
            if resp.status_code == 200:
                return resp.json()["part"]
            assert resp.status_code == 204, resp.text
            self.submit()
        raise AssertionError("no part to lease")

    def fresh_lease(self) -> dict[str, Any]:
        # A lease used by the last request may be gone (released, failed, completed): take a new one.
        self.lease = self.claim()
        return self.lease


@pytest.fixture(scope="module")
def live(scenes) -> LiveFarm:
    require("redis-server")
    with tempfile.TemporaryDirectory(prefix="ff-st-", dir="/tmp") as tmp:
        root = Path(tmp)
        redis = RedisServer(root / "redis", root / "redis.log").start()
        storage = f"file://{root / 'storage'}"
        gateway = GatewayProcess(free_port(), redis.url, storage, root / "gateway.log", processes=1, threads=16,
                                 env={"FRAMEFARM_MAX_FRAMES": "200", "FRAMEFARM_CLAIM_WAIT_S": "1",
                                      "FRAMEFARM_LEASE_S": "30"})
        try:
            gateway.start()
            r = redis.client()
            scene = scenes("--no-texture").read_bytes()
            farm = Farm.from_settings(Settings(redis_url=redis.url, storage=storage))
            lf = LiveFarm(gateway.url, farm, create_token(r, "client"), create_token(r, "worker"),
                          hashlib.sha256(scene).hexdigest())
            assert lf.call("PUT", f"/v1/files/{lf.scene_sha}", lf.client, data=scene).status_code == 201
            done = lf.submit("1-2")
            for part in (lf.claim(), lf.claim()):
                assert lf.call("PUT", f"/v1/parts/{part['id']}/result", lf.worker, data=frames_zip(part["frames"]),
                               headers={"X-Lease-Token": part["token"], "X-Worker-Id": part["worker"]}).status_code == 200
            view = wait_for(lambda: (v := lf.call("GET", f"/v1/jobs/{done['id']}", lf.client).json())["status"]
                            == "done" and v, 30, "the first job to be assembled")
            lf.done_job = done["id"]
            lf.download = {k: v[0] for k, v in parse_qs(urlsplit(view["download_url"]).query).items()}
            tarball = root / "blender.tar.xz"
            tarball.write_bytes(b"a build")
            blender_builds.publish(farm.redis, farm.storage, tarball, "3.4.1")
            build = lf.call("GET", "/v1/blender", lf.worker).json()
            lf.blender = {"sha": build["sha256"], **{k: v[0] for k, v in parse_qs(urlsplit(build["url"]).query).items()}}
            lf.submit()
            yield lf
        finally:
            if gateway.proc is not None:
                print(gateway.tail(60))
            gateway.stop()
            redis.stop()


# The spec as packaged (the gateway serves the same bytes, test_openapi.py checks); sent to `live.url`.
@schemathesis.serializer("application/zip")
def _zip(ctx, value: Any) -> bytes:
    """Result uploads. The spec's body is a string, so a real zip travels as one (its bytes as
    Latin-1 characters, see `feed`) and the case stays valid in schemathesis's eyes."""
    if isinstance(value, bytes):
        return value
    text = str(value)
    return text.encode("latin-1") if all(ord(c) < 256 for c in text) else text.encode("utf-8", "surrogatepass")


schema = schemathesis.openapi.from_path(str(resources.files("framefarm.gateway").joinpath("openapi.yaml")),
                                        config=CONFIG)


def spec_accepted_is_not_refused_for_its_shape(ctx, response, case) -> None:
    """A request generated valid is refused only for what the spec cannot describe."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive or response.status_code != 400:
        return None
    code = (response.json().get("error") or {}).get("code")
    if code in SHAPE_CODES:
        raise Failure(operation=case.operation.label, title="A request the spec accepts was refused for its shape",
                      message=f"{case.method} {case.formatted_path}: {response.text[:300]}")
    return None


def positive(case, location: ParameterLocation) -> bool:
    return case.meta is None or not case.meta.is_negative_at(location)


def feed(case, live: LiveFarm) -> str | None:
    """Put real ids, tokens and bodies into the valid parts of `case`; the token to send."""
    path, tags = case.operation.path, case.operation.definition.raw.get("tags", [])
    params = case.path_parameters if case.path_parameters is not None else {}
    if positive(case, ParameterLocation.PATH):
        if "wid" in params:
            params["wid"] = live.worker_id()
        if "job_id" in params:
            params["job_id"] = live.done_job
        if "pid" in params:
            params["pid"] = live.fresh_lease()["id"]
        if path == "/v1/parts/{pid}/files/{sha}":
            params["sha"] = live.scene_sha
        if path == "/v1/blender/{sha}":
            params["sha"] = live.blender["sha"]
        if path == "/v1/files/{sha}" and positive(case, ParameterLocation.BODY):
            params["sha"] = hashlib.sha256(serialize_binary(case.body)).hexdigest()  # the bytes as sent
    if "pid" in params and live.lease is not None and positive(case, ParameterLocation.HEADER):
        case.headers = {**(case.headers or {}), "X-Lease-Token": live.lease["token"], "X-Worker-Id": live.lease["worker"]}
    if positive(case, ParameterLocation.QUERY) and path in ("/v1/download/{job_id}", "/v1/blender/{sha}"):
        case.query = {**(case.query or {}), **{k: v for k, v in (
            live.download if path.startswith("/v1/download") else live.blender).items() if k != "sha"}}
    if path == "/v1/parts/{pid}/result" and case.method == "PUT" and live.lease is not None \
            and positive(case, ParameterLocation.BODY) and next(live.results) % 2 == 0:
        case.body = frames_zip(live.lease["frames"]).decode("latin-1")
    if positive(case, ParameterLocation.BODY) and isinstance(case.body, (dict, list)):
        case.body = whole_numbers_as_integers(case.body)
    if path == "/v1/jobs" and case.method == "POST" and positive(case, ParameterLocation.BODY) \
            and isinstance(case.body, dict):
        case.body = {**case.body, "manifest": {"scene.blend": live.scene_sha}, "main": "scene.blend"}
    return live.client if "client" in tags else live.worker if "worker" in tags else None


def whole_numbers_as_integers(value: Any) -> Any:
    """JSON Schema counts 2.0 as an integer, and hypothesis sends it so; the farm reads whole numbers
    as JSON integers (contract.py), as the clients send them. Not a case worth a failure here."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2 ** 53:
        return int(value)
    if isinstance(value, dict):
        return {k: whole_numbers_as_integers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [whole_numbers_as_integers(v) for v in value]
    return value


@schema.parametrize()
def test_the_live_gateway_keeps_its_contract(case, live):
    token = feed(case, live)
    # Where the headers were generated to break the schema (a missing or malformed Authorization,
    # say), they are sent as they are: the gateway must refuse them itself.
    headers = {"Authorization": f"Bearer {token}"} if token and positive(case, ParameterLocation.HEADER) else {}
    resp = case.call_and_validate(base_url=live.url, session=live.session, headers=headers,
                                  additional_checks=[spec_accepted_is_not_refused_for_its_shape])
    ANSWERS[case.operation.label].add(resp.status_code)


# Operations that must have got past their 404s and 409s in the run above, and the answer that shows it.
REACHED = {
    "PUT /v1/files/{sha}": 201, "POST /v1/jobs": 201, "GET /v1/jobs/{job_id}": 200,
    "GET /v1/jobs/{job_id}/archive": 302, "GET /v1/download/{job_id}": 200, "POST /v1/workers": 201,
    "POST /v1/workers/{wid}/claim": 200, "POST /v1/workers/{wid}/heartbeat": 200,
    "DELETE /v1/workers/{wid}": 200, "GET /v1/parts/{pid}/scene": 200, "GET /v1/parts/{pid}/files/{sha}": 200,
    "PUT /v1/parts/{pid}/result": 200, "POST /v1/parts/{pid}/result/upload": 200,
    "POST /v1/parts/{pid}/failure": 200, "POST /v1/parts/{pid}/release": 200, "GET /v1/blender": 200,
    "GET /v1/blender/{sha}": 200,
}


def test_the_run_reached_past_the_404s():
    """The real ids worked: each operation that acts on something real did act, at least once."""
    if not ANSWERS:
        pytest.skip("runs after test_the_live_gateway_keeps_its_contract, in the same session")
    missed = {op: sorted(ANSWERS.get(op, ())) for op, status in REACHED.items() if status not in ANSWERS.get(op, ())}
    assert not missed, f"never answered as when it acts (operation: statuses seen): {missed}"


# Under pytest-xdist (scripts/test.sh), schemathesis 4.32 collects only the spec's first
# operation in a worker, so the run above would check GET /healthz alone. There, this module
# runs as it does serially, in a pytest of its own, and its outcome is this one test's.
if os.environ.get("PYTEST_XDIST_WORKER"):
    del test_the_live_gateway_keeps_its_contract, test_the_run_reached_past_the_404s

    def test_the_contract_run_in_a_pytest_of_its_own():
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
        res = subprocess.run([sys.executable, "-m", "pytest", __file__, "-q", "-p", "no:xdist",
                              "-p", "no:cacheprovider"], env=env, capture_output=True, text=True, timeout=1200)
        assert res.returncode == 0, res.stdout[-8000:] + res.stderr[-2000:]
        assert " passed" in res.stdout and " failed" not in res.stdout and " skipped" not in res.stdout, res.stdout[-2000:]
