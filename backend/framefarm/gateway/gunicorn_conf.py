"""gunicorn settings for a Framefarm gateway (`gunicorn -c python:framefarm.gateway.gunicorn_conf`).

Long-polls (idle workers waiting for parts, clients waiting for progress) hold a
request open for up to ~30 s, so a thread per waiting request would let a few
thousand idle workers cost a gateway host thousands of threads, and cap them at the
thread count. gevent's worker serves each request as a greenlet instead (a few KB,
and a wait on events.py's condition costs nothing until it wakes), up to
FRAMEFARM_GUNICORN_CONNECTIONS per process; the gateway caps its own waiters below
that (FRAMEFARM_MAX_WAITERS), so health checks, heartbeats and clients always get in.
FRAMEFARM_GUNICORN_WORKER_CLASS=gthread (with FRAMEFARM_GUNICORN_THREADS) is the
thread-per-request alternative. Every setting can be overridden with FRAMEFARM_*
variables or gunicorn flags.
"""
import multiprocessing
import os
import resource

from framefarm.gateway import metrics_files as _metrics
from framefarm.gateway.config import Settings

# Every gateway process writes its Prometheus metrics to files under one folder, summed by
# GET /metrics in any of them (metrics.py); set before a process makes its first metric.
_metrics.prepare_multiprocess()

_settings = Settings.from_env()
bind = _settings.bind
if _settings.certfile or _settings.keyfile:
    if not _settings.tls:
        raise SystemExit("framefarm gateway: HTTPS needs both FRAMEFARM_CERTFILE and FRAMEFARM_KEYFILE "
                         "(--certfile and --keyfile)")
    # gunicorn then serves HTTPS only: a plain-HTTP request to this port fails its handshake.
    certfile, keyfile = _settings.certfile, _settings.keyfile
workers = int(os.environ.get("FRAMEFARM_GUNICORN_WORKERS", min(4, multiprocessing.cpu_count() * 2)))
worker_class = os.environ.get("FRAMEFARM_GUNICORN_WORKER_CLASS", "gevent")
threads = int(os.environ.get("FRAMEFARM_GUNICORN_THREADS", 100))
worker_connections = int(os.environ.get("FRAMEFARM_GUNICORN_CONNECTIONS", 4000))
os.environ.setdefault("FRAMEFARM_MAX_WAITERS", str(max(1, worker_connections - 200 if worker_class == "gevent"
                                                       else threads - 20)))
# Each waiting claim holds a socket: lift the soft limit on open files (1024 on many systems)
# to the hard one, which the workers inherit.
_soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
if _hard != resource.RLIM_INFINITY and _soft < _hard:
    resource.setrlimit(resource.RLIMIT_NOFILE, (_hard, _hard))
# The worker process's liveness timeout, not a request limit (a gevent process reports every second).
timeout = 60
# On SIGTERM, requests in flight (uploads, long-polls) get this long to finish.
graceful_timeout = 35
keepalive = 5
# Uploads stream through; nothing in the request line or headers is large.
limit_request_line = 8190
# %(U)s is the path without its query string: signed download links stay out of logs.
accesslog = os.environ.get("FRAMEFARM_ACCESS_LOG", "-")
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(B)s %(M)sms'
errorlog = "-"
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"framefarm": {"()": "framefarm.common.logs.formatter"}},  # FRAMEFARM_LOG_FORMAT
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "framefarm",
                            "stream": "ext://sys.stderr"}},
    "root": {"level": os.environ.get("FRAMEFARM_LOG_LEVEL", "INFO"), "handlers": ["stderr"]},
    "loggers": {
        "gunicorn.error": {"level": "INFO", "handlers": ["stderr"], "propagate": False},
        "gunicorn.access": {"level": "INFO", "handlers": ["stderr"], "propagate": False},
    },
}


def post_worker_init(worker):
    """On SIGTERM or SIGINT, end this process's long-polls at once so a graceful stop is
    quick (waiting clients simply poll again, on another gateway if this one is gone).

    The handlers only mark the worker stopping and write a byte to a pipe; a thread
    wakes the long-polls. Nothing in a handler takes a lock: closing the waiters there
    (a Condition) or gunicorn's own SIGINT handler (which shuts a thread pool down
    under a lock) could deadlock when a second signal lands inside the first handler.
    gunicorn's master sends SIGQUIT for a quick stop; that one stays gunicorn's.
    This process also gets SIGTERM if the master dies, however it dies (PDEATHSIG).
    """
    import select
    import signal
    import threading

    from framefarm.common.procs import die_with_parent

    die_with_parent(signal.SIGTERM)()
    notifier = worker.wsgi.extensions["framefarm"].notifier
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)

    def on_stop(signum, frame):
        worker.alive = False  # gunicorn's own SIGTERM handler does only this
        try:
            os.write(write_fd, b"x")
        except BlockingIOError:  # the pipe is full: the thread has been woken already
            pass

    def close_waiters() -> None:
        select.select([read_fd], [], [])  # under gevent, a cooperative wait (monkey-patched)
        os.read(read_fd, 1)
        notifier.close_waiters()

    threading.Thread(target=close_waiters, name="stop-waiters", daemon=True).start()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_stop)


def child_exit(server, worker):
    _metrics.process_gone(worker.pid)


def on_exit(server):
    _metrics.remove_folder()
