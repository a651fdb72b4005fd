"""JSON errors: every failure a client can cause is an ApiError with the right status.

Anything else that escapes a view is logged and answered as a 500 in the same
shape; tests fail on any 500, so one is always a bug here, never a client's fault.
"""
from __future__ import annotations

import logging

import redis
from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

from .storage import StorageUnavailable

log = logging.getLogger("framefarm.gateway")


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, **extra) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra


class TooMany(ApiError):
    """429: over a limit that frees up with time; the Retry-After header says when to ask again
    (the farm's clients wait that long and retry: common/http.py)."""

    def __init__(self, code: str, message: str, retry_after_s: float, **extra) -> None:
        super().__init__(429, code, message, **extra)
        self.retry_after_s = max(1, round(retry_after_s))


def bad_request(message: str, code: str = "bad_request", **extra) -> ApiError:
    return ApiError(400, code, message, **extra)


def not_found(what: str) -> ApiError:
    return ApiError(404, "not_found", f"{what} not found")


def conflict(message: str, code: str = "conflict") -> ApiError:
    return ApiError(409, code, message)


def error_body(code: str, message: str, **extra):
    return {"error": {"code": code, "message": message, **extra}}


def install(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api(e: ApiError):
        resp = jsonify(error_body(e.code, e.message, **e.extra))
        if isinstance(e, TooMany):
            resp.headers["Retry-After"] = str(e.retry_after_s)
        return resp, e.status

    @app.errorhandler(HTTPException)
    def _http(e: HTTPException):
        code = (e.name or "error").lower().replace(" ", "_")
        resp = jsonify(error_body(code, e.description or e.name))
        # Werkzeug's own headers, such as Allow on a 405, are part of the answer.
        resp.headers.extend((k, v) for k, v in e.get_headers() if k.lower() != "content-type")
        return resp, e.code

    def unavailable(what: str, e: Exception, retry_after: int):
        log.warning("%s unavailable: %s", what, e)
        resp = jsonify(error_body("unavailable", f"the farm's {what} is unreachable; retry shortly"))
        resp.headers["Retry-After"] = str(retry_after)
        return resp, 503

    @app.errorhandler(redis.ConnectionError)
    @app.errorhandler(redis.TimeoutError)
    @app.errorhandler(redis.BusyLoadingError)
    def _redis_down(e):
        return unavailable("database", e, 2)

    @app.errorhandler(StorageUnavailable)
    def _storage_down(e):
        return unavailable("storage", e, 5)

    @app.errorhandler(Exception)
    def _bug(e: Exception):
        log.exception("unhandled error")
        return jsonify(error_body("internal", "internal error; see the gateway log")), 500
