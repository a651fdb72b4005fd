"""A job's finishing task: one more part, run on a worker once every frame is in.

A job may ask for a finishing task of a kind ("encode": a movie of its frames; "merge": a
split still joined). When its last frame part is counted (lua/complete.lua, `frames_complete`
in lua/_lib.lua) the job gets one more part, index `parts_total`, spanning the job's frames,
queued like any other: leases, fencing, retries, heartbeats, cancel and blocklists work for
it unchanged. lua/claim.lua hands it only to a worker that advertised the kind (or the
capability the task `needs`, such as "merge-denoise") when it registered (workers.py); until
one is live the job says why it waits (`waiting_reason`).
The worker fetches the frame parts' results through its lease (`inputs`, GET
/v1/parts/{pid}/inputs), and sends back a zip of files like any part; archive.py puts it
into the final zip, with the frames or without them as the job's `keep_frames` says.
"""
from __future__ import annotations

import json
import posixpath
import re
import shutil
import zipfile
from dataclasses import dataclass, field
from typing import Any, cast

from framefarm.common.frameset import PartSpan

from . import keys, parts
from .errors import bad_request, conflict, not_found
from .farm import Farm
from .storage import StorageError

RENDER = "render"  # the kind of every frame part
KINDS = ("encode", "merge")  # openapi.yaml's FinishKind
# What a waiting job says it waits for, by kind.
_WAITS_FOR = {"encode": "a worker that can encode (one with ffmpeg: framefarm worker advertises it)",
              "merge": "a worker that can merge",
              "merge-denoise": "a worker that can merge and denoise (its Blender has OpenImageDenoise: "
                               "framefarm worker advertises merge-denoise)"}
# A finishing result is a few files (a movie, a still), named plainly: never a path, never hidden.
_FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
MAX_FILES = 64


@dataclass(frozen=True)
class Finish:
    """A job's finishing task, as submitted (openapi.yaml's Finish, already checked by the spec)."""

    kind: str
    keep_frames: bool = True
    options: dict[str, Any] = field(default_factory=dict)
    needs: str | None = None  # the capability a worker must advertise to run it; None: its kind

    @classmethod
    def from_body(cls, body: dict[str, Any] | None) -> "Finish | None":
        if not body:
            return None
        options = body.get("options") or {}
        if len(json.dumps(options)) > 4096:
            raise bad_request("finish.options must be at most 4096 characters of JSON", "bad_finish")
        return cls(body["kind"], bool(body.get("keep_frames", True)), options)

    def fields(self) -> dict[str, str]:
        """How the job's record holds it (Redis stores no None and no nesting)."""
        fields = {"finish": self.kind, "keep_frames": "1" if self.keep_frames else "0",
                  "finish_options": json.dumps(self.options, sort_keys=True)}
        if self.needs:  # lua/_lib.lua's frames_complete queues the task for this capability
            fields["finish_needs"] = self.needs
        return fields


def kind_of(job: dict[str, str]) -> str | None:
    return job.get("finish") or None


def options_of(job: dict[str, str]) -> dict[str, Any]:
    return cast(dict[str, Any], json.loads(job.get("finish_options") or "{}"))


def part_id(job: dict[str, str]) -> str:
    """The finishing part's id: the index after the frame parts'."""
    return keys.part_id(job["id"], int(job["parts_total"]))


def is_finishing(job: dict[str, str], index: int) -> bool:
    return kind_of(job) is not None and index >= int(job["parts_total"])


def claim_fields(job: dict[str, str], index: int) -> dict[str, Any]:
    """What a claim of part `index` says about finishing: its kind, the job's finishing kind, and
    (on the finishing part) the options."""
    kind = kind_of(job)
    if kind is not None and is_finishing(job, index):
        return {"kind": kind, "finish": kind, "options": options_of(job)}
    return {"kind": RENDER, "finish": kind, "options": None}


def view(farm: Farm, job: dict[str, str]) -> dict[str, Any] | None:
    """The job view's `finish`: the task and where it stands (`waiting` while frames render)."""
    kind = kind_of(job)
    if kind is None:
        return None
    state, attempts, error = cast(list[str | None], farm.redis.hmget(keys.part(part_id(job)), "state", "attempts",
                                                                     "error"))
    return {"kind": kind, "keep_frames": job.get("keep_frames", "1") == "1", "options": options_of(job),
            "state": parts.shown_state(state, job["status"]) if state else "waiting",
            "attempts": int(attempts or 0), "error": error}


def waiting_reason(job: dict[str, str], live: list[dict[str, str]]) -> str | None:
    """Why a job whose finishing part is queued does not progress: no live worker advertises its kind
    (`finishing` names the capability it needs: lua/_lib.lua)."""
    kind = job.get("finishing")
    if not kind or any(kind in can_do(w) for w in live):
        return None
    return f"waiting: every frame is rendered; the {kind} task waits for {_WAITS_FOR.get(kind, kind)}"


def can_do(worker: dict[str, str]) -> set[str]:
    """The finishing kinds a registered worker advertised."""
    return set(filter(None, worker.get("capabilities", "").split(",")))


def check_names(infos: list[zipfile.ZipInfo]) -> None:
    """A finishing result's entries: at most MAX_FILES plain file names, each once (400 otherwise).
    Their sizes are bounded like any result's, by the job's frames (results.Bounds)."""
    if not infos:
        raise bad_request("the finishing result is empty", "bad_result")
    if len(infos) > MAX_FILES:
        raise bad_request(f"the finishing result holds {len(infos)} files; at most {MAX_FILES}", "bad_result")
    seen: set[str] = set()
    for info in infos:
        if info.is_dir() or not _FILE_NAME.fullmatch(info.filename):
            raise bad_request(f"unexpected entry {info.filename[:100]!r} in the finishing result; entries must be "
                              "plain file names (letters, digits, '.', '_', '-')", "bad_result")
        if info.filename in seen:
            raise bad_request(f"{info.filename} appears twice in the result", "bad_result")
        seen.add(info.filename)


def _frame_results(farm: Farm, job: dict[str, str]) -> list[tuple[int, PartSpan, str]]:
    pipe = farm.redis.pipeline()
    n = int(job["parts_total"])
    for i in range(n):
        pipe.hmget(keys.part(keys.part_id(job["id"], i)), *parts.SPAN_FIELDS, "result")
    return [(i, parts.span_from(p[:4]), p[4]) for i, p in enumerate(pipe.execute())]


def inputs(farm: Farm, job: dict[str, str], index: int, link: Any) -> list[dict[str, Any]]:
    """The inputs of the finishing part `index` of `job`: every frame part's span and, where the
    storage signs URLs, a link to its result (`link(key)`: downloads.storage_link)."""
    _require_finishing(job, index)
    return [{"index": i, "span": span.to_json(), "url": link(result)} for i, span, result in _frame_results(farm, job)]


def input_key(farm: Farm, job: dict[str, str], index: int, which: int) -> str:
    """The stored result of frame part `which`, for the finishing part `index` of `job`."""
    _require_finishing(job, index)
    if not 0 <= which < int(job["parts_total"]):
        raise not_found(f"input {which} of job {job['id']}")
    result = farm.redis.hget(keys.part(keys.part_id(job["id"], which)), "result")
    if not result:
        raise not_found(f"the result of part {which} of job {job['id']}")
    return cast(str, result)


def _require_finishing(job: dict[str, str], index: int) -> None:
    if not is_finishing(job, index):
        raise conflict(f"part {index} of job {job['id']} renders frames; only a finishing part has inputs",
                       "not_finishing")


# The movie files an encode task makes (worker/encode.py's containers), with their media types.
_MOVIE_TYPES = {".mp4": "video/mp4", ".mov": "video/quicktime", ".mkv": "video/x-matroska", ".webm": "video/webm",
                ".avi": "video/x-msvideo", ".mpg": "video/mpeg", ".dvd": "video/mpeg", ".ogv": "video/ogg",
                ".flv": "video/x-flv", ".dv": "video/dv"}


def movie_type(name: str) -> str:
    return _MOVIE_TYPES.get(posixpath.splitext(name)[1].lower(), "application/octet-stream")


def keep_movie(farm: Farm, job: dict[str, str], result: str, zin: zipfile.ZipFile, info: zipfile.ZipInfo) -> None:
    """While archive.py copies the finishing result of an encode job into the final zip: keep its
    movie under its own key too, for the job's `movie_url` (deleted with the archive: cleanup.py)."""
    if kind_of(job) != "encode" or job.get("movie") or posixpath.splitext(info.filename)[1].lower() not in _MOVIE_TYPES:
        return
    if farm.redis.hget(keys.part(part_id(job)), "result") != result:
        return
    with zin.open(info) as src, farm.storage.writer(keys.movie(job["id"])) as dst:
        shutil.copyfileobj(src, dst, 1024 * 1024)
    farm.redis.hset(keys.job(job["id"]), "movie", info.filename)
    job["movie"] = info.filename  # one movie per job, even if the task made two


def archive_results(farm: Farm, job: dict[str, str], frame_results: list[str]) -> list[str]:
    """The stored results whose entries go into the final zip, in order: the frame parts' (unless
    the job's finishing task keeps none), then the finishing part's."""
    if kind_of(job) is None:
        return frame_results
    finished = farm.redis.hget(keys.part(part_id(job)), "result")
    if not finished:
        raise StorageError(f"job {job['id']}'s finishing part has no result")
    keep = job.get("keep_frames", "1") == "1"
    return [*(frame_results if keep else []), cast(str, finished)]
