"""What a job's owner (or an admin) may do to a job after submitting it, besides cancelling it:
pause, resume, retry its failed parts, change its priority.

Each is one Lua script that moves the job out of, into or within its Blender version's queue
of jobs (lua/pause.lua, resume.lua, retry.lua, set_priority.lua); claims (lua/claim.lua)
are not changed by any of them: a paused job is simply not in line, so it hands out no new
parts, while the parts already leased finish and count as usual. A job that has ended (or is
being assembled) cannot be paused, resumed or re-prioritised: 409 `wrong_state`.
"""
from __future__ import annotations

from . import jobs, quotas, scene_files
from .auth import Identity
from .errors import ApiError
from .farm import Farm


def _wrong_state(job: dict[str, str], status: str, action: str, why: str = "") -> ApiError:
    return ApiError(409, "wrong_state", f"job {job['id']} is {status} and cannot be {action}{why}")


def pause(farm: Farm, job: dict[str, str]) -> None:
    """Hand out no more of the job's parts (a paused job stays paused: a no-op)."""
    res = farm.scripts.pause(args=[job["id"]])
    if res[0] == "wrong_state":
        raise _wrong_state(job, res[1], "paused")


def resume(farm: Farm, job: dict[str, str]) -> None:
    """Put a paused job back in line at its own place (a job not paused: a no-op). An estimated
    job (estimates.py) goes on with the frames after its samples, which are not rendered again."""
    res = farm.scripts.resume(args=[job["id"]])
    if res[0] == "wrong_state":
        raise _wrong_state(job, res[1], "resumed")


def set_priority(farm: Farm, job: dict[str, str], priority: int, identity: Identity) -> None:
    """Move the job within its queue; a client is held to the priorities it may submit with
    (422 `priority_not_allowed`, as at submission: quotas.check_priority)."""
    quotas.check_priority(farm.settings, priority, identity)
    res = farm.scripts.set_priority(args=[job["id"], priority])
    if res[0] == "wrong_state":
        raise _wrong_state(job, res[1], "re-prioritised")


def retry(farm: Farm, job: dict[str, str]) -> None:
    """Run a failed job again: its failed parts go back in its queue with fresh attempts, and the
    workers kept away from it may take them again. Once clean-up has let go of the job (its
    parts' results deleted), every part renders again; if one of its scene files was deleted
    meanwhile, 409 `files_gone` (submit the scene again) and nothing changes."""
    if job["status"] != "failed":
        raise _wrong_state(job, job["status"], "retried", "; only a failed job can be retried")
    shas = sorted(set(jobs.manifest_of(farm, job["id"]).values()))
    gone = scene_files.missing(farm, None, shas)
    res = ["files_gone"] if gone else farm.scripts.retry(args=[job["id"], *shas])
    if res[0] == "files_gone":
        raise ApiError(409, "files_gone", f"job {job['id']} cannot be retried: the farm no longer holds its scene "
                       "files (deleted after it failed); submit the scene again")
    if res[0] == "wrong_state":
        raise _wrong_state(job, res[1], "retried", "; only a failed job can be retried")
