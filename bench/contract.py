"""What does checking a request against openapi.yaml cost, on the hot paths and on big submissions?

For each request below, in one run: the time of `Contract.check` (contract.py: validators
built once per operation, references inlined) and, side by side, of openapi-core's own
request validator on the same request (`V31RequestValidator`, which builds its validators
and resolves references anew on every request), and of parsing the JSON body alone. (openapi-core as shipped also reads a streamed upload's
body whole, and refuses its bytes as not a string: its time is listed, not its verdict.)
Printed per request: microseconds (best of `--rounds` batches) and the ratios. No Redis,
no gateway process: only the check itself is timed.

    python bench/contract.py [--rounds 5] [--batch 200]
"""
from __future__ import annotations

import argparse
import json
import time
from typing import Callable

from flask import Flask, request
from jsonschema_path import SchemaPath
from openapi_core.contrib.flask import FlaskOpenAPIRequest
from openapi_core.validation.request.validators import V31RequestValidator

from framefarm.gateway.contract import Contract

SHA = "a" * 64
JOB = {"main": "scene.blend", "frames": "1-250", "chunk": 5}
REQUESTS = {  # name: (route, path, method, body)
    "claim": ("/v1/workers/<wid>/claim", "/v1/workers/w-0123456789ab/claim", "POST", {"wait": 20}),
    "heartbeat, 4 leases": ("/v1/workers/<wid>/heartbeat", "/v1/workers/w-0123456789ab/heartbeat", "POST",
                            {"parts": [{"id": f"0123456789ab:{i}", "token": "12"} for i in range(4)]}),
    "job long-poll": ("/v1/jobs/<job_id>", "/v1/jobs/0123456789ab?wait=25&rev=3&parts=1", "GET", None),
    "result upload (streamed)": ("/v1/parts/<pid>/result", "/v1/parts/0123456789ab:7/result", "PUT", None),
    "submit, 1 file": ("/v1/jobs", "/v1/jobs", "POST", {"manifest": {"scene.blend": SHA}, **JOB}),
    "submit, 100 files": ("/v1/jobs", "/v1/jobs", "POST",
                          {"manifest": {f"tex/{i}.png": SHA for i in range(99)} | {"scene.blend": SHA}, **JOB}),
    "submit, 20,000 files": ("/v1/jobs", "/v1/jobs", "POST",
                             {"manifest": {f"tex/{i}.png": SHA for i in range(19999)} | {"scene.blend": SHA}, **JOB}),
}


def best(fn: Callable[[], object], rounds: int, batch: int) -> float:
    """Seconds per call: the best of `rounds` batches (the machine's other work only slows a batch)."""
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(batch):
            fn()
        times.append((time.perf_counter() - start) / batch)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=200)
    args = parser.parse_args()
    contract = Contract.packaged()
    core = V31RequestValidator(SchemaPath.from_dict(contract.spec))
    app = Flask("bench")
    for route, _, method, _ in REQUESTS.values():
        app.add_url_rule(route, route + method, methods=[method])
    results = {}
    for name, (route, path, method, body) in REQUESTS.items():
        kw = {"data": json.dumps(body), "content_type": "application/json"} if body is not None else \
            {"data": b"PK", "content_type": "application/zip"}
        with app.test_request_context(path, method=method, headers={"Authorization": "Bearer x",
                                                                    "X-Lease-Token": "1"}, **kw):
            op = contract.operation(route, method.lower())
            assert op is not None
            contract.check(op, request)  # compiles the operation, as its first request does
            batch = max(3, args.batch // (100 if "20,000" in name else 1))
            ours = best(lambda: contract.check(op, request), args.rounds, batch)
            theirs = best(lambda: list(core.iter_errors(FlaskOpenAPIRequest(request))), args.rounds, max(3, batch // 10))
            parse = best(lambda: json.loads(request.get_data()), args.rounds, batch) if body is not None else 0.0
        results[name] = {"check_us": round(ours * 1e6, 1), "openapi_core_us": round(theirs * 1e6, 1),
                         "json_parse_us": round(parse * 1e6, 1), "openapi_core/check": round(theirs / ours, 1)}
        print(f"{name:26} check {ours * 1e6:9.1f} us   openapi-core as shipped {theirs * 1e6:10.1f} us "
              f"({theirs / ours:5.1f}x)   JSON parse alone {parse * 1e6:8.1f} us")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
