"""Webhook receivers for tests: real HTTP servers on this machine, recording what they get."""
from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Delivery:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    def signed_with(self, key_hex: str) -> bool:
        ts = self.headers["x-framefarm-timestamp"]
        mac = hmac.new(bytes.fromhex(key_hex), ts.encode() + b"." + self.body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(self.headers["x-framefarm-signature"], "sha256=" + mac)


class Receiver:
    """Answers each POST with the next of `statuses` (the last one repeats), recording it.
    A 3xx answer carries `Location: redirect_to`."""

    def __init__(self, statuses: tuple[int, ...] = (200,), redirect_to: str = "") -> None:
        self.deliveries: list[Delivery] = []
        self._statuses = list(statuses)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.deliveries.append(Delivery(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                status = outer._statuses.pop(0) if len(outer._statuses) > 1 else outer._statuses[0]
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", redirect_to)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Hanging:
    """Accepts connections and never answers: a receiver that hangs."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/hook"
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        for c in self.held:
            c.close()
        self.sock.close()
