"""The gateway's Flask app factory.

A gateway holds no state of its own: everything lives in Redis and storage, so
any number of them (each with several gunicorn processes) serve the same farm.
"""
from __future__ import annotations

import logging
import threading

import redis
from flask import Flask, request
from werkzeug.middleware.proxy_fix import ProxyFix

from . import (api_admin, api_client, api_public, api_webhooks, api_worker, archive, auth, blender_builds, cleanup,
               contract, errors, gateways, metrics, redisconn, scheduling, upgrade, webhooks, workers)
from .background import loop
from .dashboard import bp as dashboard
from .config import Settings
from .farm import Farm

log = logging.getLogger("framefarm.gateway")

MAX_JSON_BYTES = 16 * 1024 * 1024


def create_app(settings: Settings | None = None, *, background: bool = False) -> Flask:
    """Build a gateway app. `background` starts this process's duties (event
    subscription, announcing itself, requeueing expired leases, assembling
    finished jobs); gunicorn processes want them, unit tests usually not."""
    settings = settings or Settings.from_env()
    farm = Farm.from_settings(settings)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = None  # uploads enforce their own limit while streaming
    app.json.sort_keys = False  # type: ignore[attr-defined]  # DefaultJSONProvider has it
    app.extensions["framefarm"] = farm
    app.extensions["framefarm.waiters"] = scheduling.Waiters(settings.max_waiters, settings.max_waiters_per_token)
    app.extensions[api_worker.WAITING_CLAIMS] = workers.WaitingClaims()
    app.extensions[auth.TOKENS] = auth.TokenCache(settings.token_cache_s)
    app.extensions[archive.DUE] = threading.Event()  # a job's last result is in: its assembly waits no tick
    errors.install(app)
    metrics.install(app)  # first: every request is timed, refused ones too

    @app.before_request
    def _limit_json_bodies():
        # Only PUT uploads stream large bodies (each under its own limit); a JSON
        # request is read whole, so it is capped before a byte of it is read.
        if request.method != "PUT" and (request.content_length or 0) > MAX_JSON_BYTES:
            raise errors.ApiError(413, "too_large", f"request bodies are limited to {MAX_JSON_BYTES} bytes")
    contract.install(app)  # after the cap: it reads JSON bodies
    if settings.proxy_hops:
        # Only when configured: X-Forwarded-* from a client that reaches the gateway directly
        # would otherwise pass for the proxy's word.
        n = settings.proxy_hops
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n)  # type: ignore[method-assign]
    for bp in (api_public.bp, api_client.bp, api_worker.bp, api_admin.bp, api_webhooks.bp, blender_builds.bp,
               dashboard):
        app.register_blueprint(bp)
    if background:
        start_background(farm, app)
    return app


def start_background(farm: Farm, app: Flask) -> threading.Event:
    stop = threading.Event()
    s = farm.settings
    farm.notifier.start()
    try:  # before the loops below requeue anything, so old parts are in this layout first
        upgrade.run(farm)
    except redis.RedisError as e:  # Redis down: its data is upgraded when a process starts with it up
        log.warning("could not check Redis for data of an earlier Framefarm: %s", e)
    if s.public_url:
        loop("announce", max(0.5, s.gateway_timeout_s / 4), lambda: gateways.announce(farm.redis, s.public_url), stop)
    else:
        log.warning("FRAMEFARM_PUBLIC_URL is not set: signed links point at %s (the listen address); "
                    "set it to the URL clients reach this gateway by", s.link_base)
    loop("reaper", 1.0, lambda: scheduling.reap(farm), stop)
    waiting: workers.WaitingClaims = app.extensions[api_worker.WAITING_CLAIMS]
    loop("presence", workers.renew_s(farm), lambda: waiting.renew(farm), stop)
    loop("assembler", 1.0, lambda: archive.assemble_pending(farm), stop, app.extensions[archive.DUE])
    loop("cleanup", s.cleanup_period_s, lambda: cleanup.step(farm), stop)
    loop("webhooks", 1.0, webhooks.Deliverer(farm, app).step, stop)
    log.info("gateway process ready (redis %s, storage %s, public url %s)",
             redisconn.redact(s.redis_url), s.storage, s.public_url or "-")
    return stop
