"""gunicorn settings for a Framefarm gateway, for running gunicorn by hand:

    gunicorn -c packaging/gunicorn.conf.py framefarm.gateway.wsgi:app

These are exactly the settings `framefarm gateway`, `framefarm up` and the tests run
with: they live in the installed package (framefarm.gateway.gunicorn_conf) and this
file only re-exports them, so the two can never drift apart. In short: gevent
workers (a long-poll is a greenlet, not a thread or a process), 4000 connections per
process with the gateway's own cap on waiting long-polls below that, graceful_timeout
35 s so uploads in flight finish on SIGTERM while long-polls end at once, and an access
log that leaves query strings (signed links) out. Override any of it with
FRAMEFARM_BIND, FRAMEFARM_GUNICORN_WORKERS, FRAMEFARM_GUNICORN_CONNECTIONS,
FRAMEFARM_GUNICORN_WORKER_CLASS (gthread, with FRAMEFARM_GUNICORN_THREADS) or gunicorn flags.
"""
from framefarm.gateway.gunicorn_conf import *  # noqa: F401,F403
