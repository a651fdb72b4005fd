"""apitools' helpers against a live gunicorn gateway instead of Flask's test client.

Attack tests run against real processes. `LiveHttp` takes the calls apitools makes
(`http.put(path, data=..., headers=...)`, then `resp.get_json()`) to a gateway's URL over
HTTP, and carries the farm's Redis and storage folder where `farm_of` looks for them, so
`unchanged` compares the live farm's state exactly as it does an app's in this process.
"""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import redis
import requests

from framefarm.gateway.storage import LocalStorage


class LiveResponse:
    """A requests response with the few methods of Werkzeug's that the helpers use."""

    def __init__(self, resp: requests.Response) -> None:
        self.resp, self.status_code, self.headers = resp, resp.status_code, resp.headers

    def get_json(self) -> Any:
        try:
            return json.loads(self.resp.content)
        except ValueError:
            return None

    def get_data(self, as_text: bool = False) -> bytes | str:
        return self.resp.text if as_text else self.resp.content


class LiveHttp:
    """One gateway of a running cluster, spoken to the way apitools speaks to a test client."""

    def __init__(self, url: str, redis_url: str, storage_root: Path) -> None:
        self.url = url
        self.session = requests.Session()
        self.redis = redis.Redis.from_url(redis_url, decode_responses=True)  # as the gateway reads it
        farm = SimpleNamespace(redis=self.redis, storage=LocalStorage(storage_root))
        self.application = SimpleNamespace(extensions={"framefarm": farm})

    def open(self, path: str, method: str = "GET", *, json: Any = None, data: bytes | None = None,
             headers: dict[str, str] | None = None, query_string: dict[str, str] | None = None) -> LiveResponse:
        return LiveResponse(self.session.request(method, self.url + path, json=json, data=data, headers=headers,
                                                 params=query_string, timeout=60, allow_redirects=False))

    def get(self, path: str, **kw) -> LiveResponse:
        return self.open(path, "GET", **kw)

    def post(self, path: str, **kw) -> LiveResponse:
        return self.open(path, "POST", **kw)

    def put(self, path: str, **kw) -> LiveResponse:
        return self.open(path, "PUT", **kw)


def live_gateway(cluster) -> LiveHttp:
    """A gunicorn gateway started in `cluster` (the conftest fixture), with no workers of its own."""
    gw = cluster.add_gateway()
    return LiveHttp(gw.url, cluster.redis.url, cluster.root / "storage")
