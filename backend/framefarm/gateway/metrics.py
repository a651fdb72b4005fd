"""Prometheus metrics at GET /metrics (prometheus_client's text format).

Two kinds, one answer:
- What happened in this gateway's processes: request latency by route, method and status
  (claims included: their route is their latency), bytes uploaded and downloaded, frames
  rendered and each frame's render seconds (as results are counted), assembly time. Under
  gunicorn every process writes these to files in PROMETHEUS_MULTIPROC_DIR (set up by
  gunicorn_conf.py with metrics_files.py) and a scrape of any process sums them all.
- The farm's state, read from Redis at each scrape, the same from every gateway: queued parts
  per Blender version, leased parts, jobs by status, workers online / rendering / idle /
  drained, the farm-wide totals the Lua scripts keep (lease expiries, retries, failed parts,
  failed jobs: keys.STATS), and `framefarm_queued_work_seconds`, the estimated render time of
  every frame not rendered yet of the jobs with parts queued or rendering: the number an
  autoscaler wants (packaging/kubernetes/ scales workers on it, to zero when it is 0).

Who may read it: a request with FRAMEFARM_METRICS_TOKEN as its bearer token, or an admin
token, or one from an address in FRAMEFARM_METRICS_ALLOW (CIDRs; loopback by default);
anyone else gets 403.
"""
from __future__ import annotations

import hmac
import ipaddress
import os
import threading
import time
from typing import Any, Iterator, cast

from flask import Blueprint, Flask, Response, current_app, g, request

from . import keys, workers
from .errors import ApiError
from .farm import Farm, current_farm
from .framestats import JobStats, PartStats
from .metrics_files import MULTIPROC_ENV

# A job whose frames were not measured yet is counted at this many seconds a frame: enough for
# an autoscaler to start a worker, which then measures the real figure.
UNMEASURED_FRAME_S = 30.0
MAX_JOBS_SCANNED = 10_000  # jobs by status: the newest this many (a scrape is not a hot path)

bp = Blueprint("metrics", __name__)


class _Events:
    """This process's metrics, made on first use: prometheus_client picks its multi-process
    storage when a metric is created, so not before PROMETHEUS_MULTIPROC_DIR is settled."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Histogram

        self.requests = Histogram("framefarm_request_seconds", "Requests by route, method and status.",
                                  ["route", "method", "status"],
                                  buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60))
        self.uploaded = Counter("framefarm_uploaded_bytes", "Bytes of request bodies received.")
        self.downloaded = Counter("framefarm_downloaded_bytes", "Bytes of answers sent (known lengths).")
        self.frames = Counter("framefarm_frames_rendered", "Frames counted in results.")
        self.frame_seconds = Histogram("framefarm_frame_render_seconds",
                                       "Render time of one frame, as workers measured it.",
                                       buckets=(.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600))
        self.assembly = Histogram("framefarm_assembly_seconds", "Time to assemble a job's final zip.",
                                  buckets=(.1, .5, 1, 2, 5, 10, 30, 60, 120, 300, 900))
        # A claim's own cost (the Lua step that picks and leases a part), without a long-poll's wait:
        # the request histogram of the claim route holds the waits of idle workers too.
        self.claims = Histogram("framefarm_claim_seconds", "Time one claim takes at Redis, waits excluded.",
                                ["outcome"], buckets=(.0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1))


_events: _Events | None = None
_events_lock = threading.Lock()


def events() -> _Events:
    """This process's metrics, made once: two first requests at once would each register the
    same names (prometheus_client's DuplicateTimeseries, a 500) without the lock."""
    global _events
    if _events is None:
        with _events_lock:
            if _events is None:
                _events = _Events()
    return _events


def result_counted(frames: int, stats: PartStats) -> None:
    """A part's result counted: its frames, and (when the worker measured them) their render
    time, each frame observed at its part's mean (the result's stats are summed per part)."""
    ev = events()
    ev.frames.inc(frames)
    if stats.frames:
        mean = stats.seconds / stats.frames
        for _ in range(stats.frames):
            ev.frame_seconds.observe(mean)


def assembled(seconds: float) -> None:
    events().assembly.observe(seconds)


def claimed(seconds: float, got_part: bool) -> None:
    events().claims.labels("part" if got_part else "empty").observe(seconds)


def install(app: Flask) -> None:
    """Time every request, and count the bytes it brought and took."""
    app.register_blueprint(bp)

    @app.before_request
    def _start() -> None:
        g.metrics_started = time.perf_counter()

    @app.after_request
    def _observe(resp: Response) -> Response:
        started = g.pop("metrics_started", None)
        if started is not None:
            rule = request.url_rule.rule if request.url_rule is not None else "(no route)"
            ev = events()
            ev.requests.labels(rule, request.method, str(resp.status_code)).observe(time.perf_counter() - started)
            ev.uploaded.inc(request.content_length or 0)
            ev.downloaded.inc(resp.content_length or 0)
        return resp


# --- GET /metrics -----------------------------------------------------------------------------
def _allowed(farm: Farm) -> bool:
    s = farm.settings
    header = request.headers.get("Authorization", "")
    bearer = header[len("Bearer "):].strip() if header.startswith("Bearer ") else ""
    if s.metrics_token and bearer and hmac.compare_digest(bearer.encode(), s.metrics_token.encode()):
        return True
    if bearer and farm.redis.hget(keys.token(_digest(bearer)), "role") == "admin":
        return True
    try:
        addr = ipaddress.ip_address(request.remote_addr or "")
    except ValueError:
        return False
    return any(addr in ipaddress.ip_network(net.strip(), strict=False) for net in s.metrics_allow.split(",")
               if net.strip())


def _digest(token: str) -> str:
    from .auth import digest

    return digest(token)


@bp.get("/metrics")
def metrics():
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    farm = current_farm()
    if not _allowed(farm):
        raise ApiError(403, "forbidden", "metrics need FRAMEFARM_METRICS_TOKEN (or an admin token) as the bearer "
                       "token, or a request from an address in FRAMEFARM_METRICS_ALLOW")
    events()  # this process's metrics exist (and so are listed) before the first event
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
    else:
        registry = CollectorRegistry()
        registry.register(_Reregistered(REGISTRY))
    registry.register(FarmCollector(farm))
    resp = Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST.split(";")[0])
    resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return resp


class _Reregistered:
    """The process's default registry inside a scrape's own (single-process mode: tests, Flask's
    development server)."""

    def __init__(self, registry: Any) -> None:
        self.registry = registry

    def collect(self) -> Iterator[Any]:
        return self.registry.collect()


class FarmCollector:
    """The farm's state from Redis, read at each scrape."""

    def __init__(self, farm: Farm) -> None:
        self.farm = farm

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        r = self.farm.redis
        queued = GaugeMetricFamily("framefarm_queued_parts", "Parts waiting for a worker, by the Blender version "
                                   "their scenes need.", labels=["blender_version"])
        waiting: set[str] = set()  # jobs with queued parts (a paused job is in no queue: no worker may take it)
        for version in sorted(cast(set[str], r.smembers(keys.QUEUES))):
            job_ids = cast(list[str], r.zrange(keys.queue(version), 0, -1))
            pipe = r.pipeline()
            for jid in job_ids:
                pipe.zcard(keys.job_queue(jid))
            queued.add_metric([f"{int(version) // 100}.{int(version) % 100}"], sum(pipe.execute()))
            waiting.update(job_ids)
        yield queued
        # ... and the jobs being rendered now, so workers are not scaled away under their parts.
        waiting.update(keys.job_of_part(pid) for pid in cast(list[str], r.zrange(keys.LEASES, 0, -1)))
        yield from self._work(sorted(waiting))
        leased = GaugeMetricFamily("framefarm_leased_parts", "Parts leased to workers now (rendering).")
        leased.add_metric([], r.zcard(keys.LEASES))
        yield leased
        yield self._jobs()
        yield self._workers()
        totals = cast(dict[str, str], r.hgetall(keys.STATS))
        for name, about in (("lease_expiries", "Leases that ran out (a worker stopped answering)."),
                            ("retries", "Parts put back in the queue with an attempt counted."),
                            ("part_failures", "Failed renders reported by workers."),
                            ("jobs_failed", "Jobs that failed.")):
            c = CounterMetricFamily(f"framefarm_{name}", about)
            c.add_metric([], float(totals.get(name, 0)))
            yield c

    def _work(self, job_ids: list[str]) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        pipe = self.farm.redis.pipeline()
        for jid in job_ids:
            pipe.hgetall(keys.job(jid))
        total_work, total_frames = 0.0, 0
        for job in cast(list[dict[str, str]], pipe.execute()):
            left = max(0, int(job.get("frames_total", 0)) - int(job.get("frames_done", 0)))
            spf = JobStats.of(job).seconds_per_frame
            total_frames += left
            total_work += left * (UNMEASURED_FRAME_S if spf is None else spf)
        work = GaugeMetricFamily("framefarm_queued_work_seconds", "Estimated render seconds of the frames not "
                                 "rendered yet of the jobs with parts queued or rendering (the autoscaling signal).")
        work.add_metric([], total_work)
        frames = GaugeMetricFamily("framefarm_queued_frames", "Frames not rendered yet of the jobs with parts queued "
                                   "or rendering.")
        frames.add_metric([], total_frames)
        yield work
        yield frames

    def _jobs(self) -> Any:
        from prometheus_client.core import GaugeMetricFamily

        r = self.farm.redis
        ids = cast(list[str], r.zrevrange(keys.ALL_JOBS, 0, MAX_JOBS_SCANNED - 1))
        pipe = r.pipeline()
        for jid in ids:
            pipe.hget(keys.job(jid), "status")
        counts: dict[str, int] = {s: 0 for s in ("queued", "running", "assembling", "done", "failed", "cancelled",
                                                 "expired")}
        for status in pipe.execute():
            if status:
                counts[status] = counts.get(status, 0) + 1
        jobs = GaugeMetricFamily("framefarm_jobs", f"Jobs by status (the newest {MAX_JOBS_SCANNED}).",
                                 labels=["status"])
        for status, n in counts.items():
            jobs.add_metric([status], n)
        return jobs

    def _workers(self) -> Any:
        from prometheus_client.core import GaugeMetricFamily

        live = workers.live(self.farm)
        pipe = self.farm.redis.pipeline()
        for w in live:
            pipe.scard(keys.worker_parts(w["id"]))
        busy = pipe.execute()
        states = {"rendering": 0, "idle": 0, "drained": 0}
        for w, held in zip(live, busy):
            states["rendering" if held else "drained" if w.get("drained") else "idle"] += 1
        gauge = GaugeMetricFamily("framefarm_workers", "Live workers by state.", labels=["state"])
        for state, n in states.items():
            gauge.add_metric([state], n)
        return gauge
