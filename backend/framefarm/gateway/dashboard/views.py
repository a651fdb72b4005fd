"""The dashboard's pages and the forms they post (see __init__.py; sign-in: session.py).

Every page needs a session (else the sign-in page); the job actions call the same domain
functions as the API (jobs.cancel, job_actions), so they answer the same refusals, shown on
the page. Live updates are long-polls on the job revisions the API's `wait` uses: a job's
page waits for its job's next revision, the jobs list for any job's (events.py's `job:*`),
and each answer is the page's changing part, rendered here and swapped in by static/app.js.
"""
from __future__ import annotations

import hashlib
import time
from typing import Any, Callable

from flask import (Blueprint, Response, abort, current_app, g, make_response, redirect, render_template, request,
                   url_for)
from werkzeug.wrappers import Response as WerkzeugResponse

from .. import drain, job_actions, jobs, keys, longpoll, previews, quotas, workers
from ..downloads import signed_archive_link
from ..errors import ApiError, TooMany
from ..farm import Farm, current_farm
from ..framestats import JobStats
from ..parts import SPAN_FIELDS, shown_state, span_from
from . import session

bp = Blueprint("dashboard", __name__, template_folder="templates", static_folder="static",
               static_url_path="/dashboard/static")

STATUSES = ("queued", "running", "assembling", "estimated", "done", "failed", "cancelled", "expired")
LIVE_WAIT_S = 20.0  # one long-poll; the script asks again at once (after a second, for the list)
PARTS_SHOWN = 200  # parts per page of a job's parts table
THUMBS_SHOWN = 48  # the latest frames' previews on a job's page
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")


# --- sessions and the rules every dashboard response follows ---------------------------------
def _farm() -> Farm:
    return current_farm()


@bp.before_request
def _session() -> WerkzeugResponse | None:
    if request.endpoint in ("dashboard.static", "dashboard.sign_in", "dashboard.sign_in_form"):
        if request.method == "POST":
            session.check_post(request, None)
        return None
    s = session.current(_farm(), request)
    g.dashboard = s
    if request.method == "POST":
        session.check_post(request, s)
    if s is None:
        if request.method == "GET" and request.endpoint in _PAGES:
            return redirect(url_for("dashboard.sign_in_form"), code=303)
        raise ApiError(401, "unauthorized", "sign in first")
    g.identity = s.identity
    if request.endpoint != "dashboard.preview":  # a page of thumbnails is not 48 requests of its owner's quota
        quotas.count_request(_farm(), s.identity)
    return None


@bp.after_request
def _headers(resp: Response) -> Response:
    resp.headers["Content-Security-Policy"] = CSP
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Referrer-Policy"] = "same-origin"  # no-referrer would make the browser send Origin: null
    resp.headers["X-Frame-Options"] = "DENY"
    if request.endpoint not in ("dashboard.static", "dashboard.preview"):
        resp.headers["Cache-Control"] = "no-store"
    return resp


@bp.errorhandler(ApiError)
def _refused(e: ApiError):
    if request.endpoint in ("dashboard.job_live", "dashboard.jobs_live", "dashboard.preview"):
        resp = make_response(e.message, e.status)
        resp.mimetype = "text/plain"
        if isinstance(e, TooMany):  # the script waits that long before asking again
            resp.headers["Retry-After"] = str(e.retry_after_s)
        return resp
    s = getattr(g, "dashboard", None)
    return render_template("error.html", error=e, session=s), e.status


def _owner() -> str | None:
    ident = g.dashboard.identity
    return None if ident.is_admin else ident.owner


def _admin() -> None:
    if not g.dashboard.identity.is_admin:
        abort(404)  # a client learns nothing of the admin's pages, not even that they exist


# --- sign-in ----------------------------------------------------------------------------------
@bp.get("/signin")
def sign_in_form():
    return render_template("signin.html", session=None, error=None)


@bp.post("/signin")
def sign_in():
    try:
        _, value = session.sign_in(_farm(), request.form.get("token", ""))
    except ApiError as e:
        return render_template("signin.html", session=None, error=e.message), e.status
    resp = redirect(url_for("dashboard.jobs_page"), code=303)
    session.set_cookie(resp, value, request.is_secure)
    return resp


@bp.post("/signout")
def sign_out():
    resp = redirect(url_for("dashboard.sign_in_form"), code=303)
    session.clear_cookie(resp, request.is_secure)
    return resp


# --- jobs -------------------------------------------------------------------------------------
def _eta(farm: Farm, job: dict[str, str], view: dict[str, Any]) -> float | None:
    """Seconds left by the measured mean frame time, spread over the slots of the live workers
    that can take the job's parts; None before a frame was measured or once it ended."""
    spf = JobStats.of(job).seconds_per_frame
    if spf is None or job["status"] not in ("queued", "running"):
        return None
    slots = sum(int(w.get("slots", 1)) for w in workers.capable(farm, int(job["blender_version"]), job["id"]))
    left = view["frames"]["total"] - view["frames"]["done"]
    return left * spf / max(1, slots)


def _rows(farm: Farm, status: str | None) -> list[dict[str, Any]]:
    rows = []
    for job in jobs.list_for(farm, _owner()):
        if status and job["status"] != status:
            continue
        view = jobs.view(farm, job)
        view["owner"] = job.get("owner", "")
        view["eta_s"] = _eta(farm, job, view)
        rows.append(view)
    return rows


def _fingerprint(rows: list[dict[str, Any]]) -> str:
    return hashlib.sha256(",".join(f"{r['id']}:{r['rev']}:{r['status']}" for r in rows).encode()).hexdigest()[:16]


def _status_arg() -> str | None:
    status = request.args.get("status") or None
    return status if status in STATUSES else None


@bp.get("/")
def jobs_page():
    status = _status_arg()
    rows = _rows(_farm(), status)
    return render_template("jobs.html", session=g.dashboard, rows=rows, status=status, statuses=STATUSES,
                           fingerprint=_fingerprint(rows))


@bp.get("/live/jobs")
def jobs_live():
    """The jobs list's rows as soon as one of them changes (a long-poll on any job's events)."""
    farm, status, seen = _farm(), _status_arg(), request.args.get("fp", "")

    def changed() -> list[dict[str, Any]] | None:
        rows = _rows(farm, status)
        return rows if _fingerprint(rows) != seen else None

    rows = _long_poll("job:*", changed)
    if rows is None:
        return Response(status=204)
    return render_template("jobs_rows.html", session=g.dashboard, rows=rows, fingerprint=_fingerprint(rows))


def _long_poll(topic: str, ask: Callable[[], Any]) -> Any:
    return longpoll.poll(_farm(), current_app.extensions["framefarm.waiters"], g.dashboard.identity.owner, topic,
                         ask, min(LIVE_WAIT_S, _farm().settings.job_wait_max_s))


def _job_context(farm: Farm, job: dict[str, str]) -> dict[str, Any]:
    start = max(0, request.args.get("parts_from", 0, type=int) or 0)
    total = int(job["parts_total"])
    view = jobs.view(farm, job)
    view["eta_s"] = _eta(farm, job, view)
    if job["status"] == "done":
        view["download_url"] = signed_archive_link(farm, job)
    stop = min(total, start + PARTS_SHOWN)
    pipe = farm.redis.pipeline()
    for i in range(start, stop):
        pipe.hmget(keys.part(keys.part_id(job["id"], i)), *SPAN_FIELDS, "state", "attempts", "error", "worker",
                   "result", "log_tail")
    parts: list[dict[str, Any]] = []
    thumbs: dict[int, int | None] = {}  # frame -> its part (None: from the job's previews zip)
    times: dict[int, float] = {}
    assembled = previews.cache.get(farm, keys.previews(job["id"])) if job["status"] == "done" else None
    if assembled is not None:  # the part results are gone: the job's own previews zip has them all
        thumbs.update({f: None for f in assembled.previews})
        times.update(assembled.seconds)
    for p in pipe.execute():
        if p[0] is None:
            continue
        span = span_from(p[:4])
        meta = previews.cache.get(farm, p[8]) if p[4] == "done" and p[8] and assembled is None else None
        if meta is not None:
            thumbs.update({f: span.index for f in meta.previews})
            times.update(meta.seconds)
        took = [times[f] for f in span.frames() if f in times]
        parts.append({**span.to_json(), "frames": span.frames(), "state": shown_state(p[4], job["status"]),
                      "attempts": int(p[5] or 0), "error": p[6], "worker": p[7], "log_tail": p[9],
                      "seconds": sum(took) if took else None})
    shown = sorted(thumbs)[-THUMBS_SHOWN:]
    slowest = max(times.values(), default=0.0)
    strip = [{"frame": f, "seconds": s, "level": min(9, int(10 * s / slowest)) if slowest else 0}
             for f, s in sorted(times.items())]
    return {"job": view, "parts": parts, "parts_from": start, "parts_next": stop if stop < total else None,
            "parts_prev": max(0, start - PARTS_SHOWN) if start else None,
            "thumbs": [{"frame": f, "part": thumbs[f]} for f in shown], "last": shown[-1] if shown else None,
            "last_part": thumbs[shown[-1]] if shown else None, "strip": strip,
            "priority_range": (farm.settings.client_priority_min, farm.settings.client_priority_max)}


@bp.get("/jobs/<job_id>")
def job_page(job_id: str):
    farm = _farm()
    job = jobs.load(farm, job_id, _owner())
    return render_template("job.html", session=g.dashboard, **_job_context(farm, job))


@bp.get("/live/jobs/<job_id>")
def job_live(job_id: str):
    """The job page's changing part once the job's revision differs from `rev`."""
    farm = _farm()
    jobs.load(farm, job_id, _owner())
    rev = request.args.get("rev", -1, type=int)
    changed = _long_poll(f"job:{job_id}", lambda: _changed(farm, job_id, rev))
    if changed is None:
        return Response(status=204)
    return render_template("job_live.html", session=g.dashboard, **_job_context(farm, changed))


def _changed(farm: Farm, job_id: str, rev: int) -> dict[str, str] | None:
    job = jobs.load(farm, job_id, None)
    return job if int(job.get("rev", 0)) != rev else None


_ACTIONS: dict[str, Callable[[Farm, dict[str, str]], object]] = {
    "cancel": jobs.cancel,
    "pause": job_actions.pause,
    "resume": job_actions.resume,
    "retry": job_actions.retry,
    "priority": lambda f, job: job_actions.set_priority(f, job, _priority(), g.dashboard.identity),
}


def _priority() -> int:
    try:
        value = int(request.form.get("priority", ""))
    except ValueError:
        raise ApiError(400, "bad_priority", "priority must be a whole number from -1000 to 1000") from None
    if not -1000 <= value <= 1000:
        raise ApiError(400, "bad_priority", f"priority must be a whole number from -1000 to 1000, got {value}")
    return value


@bp.post("/jobs/<job_id>/<action>")
def job_action(job_id: str, action: str):
    if action not in _ACTIONS:
        abort(404)
    farm = _farm()
    _ACTIONS[action](farm, jobs.load(farm, job_id, _owner()))
    return redirect(url_for("dashboard.job_page", job_id=job_id), code=303)


@bp.get("/jobs/<job_id>/previews/<int:frame>.jpg")
def preview(job_id: str, frame: int):
    """A frame's preview: from the job's previews zip once it is done, else from the stored result
    of its part (?part=<index>)."""
    farm = _farm()
    job = jobs.load(farm, job_id, _owner())
    return previews.answer(farm, job, frame, request.args.get("part", -1, type=int))


# --- workers (admins) -------------------------------------------------------------------------
@bp.get("/workers")
def workers_page():
    _admin()
    return render_template("workers.html", session=g.dashboard, workers=drain.listing(_farm()),
                           now_ms=int(time.time() * 1000))


@bp.post("/workers/<wid>/<action>")
def worker_action(wid: str, action: str):
    _admin()
    if action not in ("drain", "undrain"):
        abort(404)
    drain.set_drained(_farm(), wid, action == "drain")
    return redirect(url_for("dashboard.workers_page"), code=303)


_PAGES = ("dashboard.jobs_page", "dashboard.job_page", "dashboard.workers_page")
