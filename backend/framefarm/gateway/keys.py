"""Every Redis key name and every Lua script of the farm, in one place.

State changes that must be atomic (claim, heartbeat, complete, fail, cancel,
lease expiry) are Lua scripts: each runs as one step on Redis, reads Redis's own
clock, and touches O(log n) entries of the shared queues, never a scan of all
jobs or parts. The key layout is mirrored in lua/_lib.lua; keep the two in step.
"""
from __future__ import annotations

from importlib import resources

import redis

PREFIX = "ff:"

SECRET = PREFIX + "secret"
EVENTS = PREFIX + "events"            # pub/sub channel: "work" or "job:<id>"
WORKERS = PREFIX + "workers"          # zset worker id -> last seen (ms)
GATEWAYS = PREFIX + "gateways"        # zset url -> last seen (ms)
LEASES = PREFIX + "leases"            # zset part id -> lease deadline (ms)
ASSEMBLY = PREFIX + "assembly"        # zset job id -> time it became ready
QUEUES = PREFIX + "queues"            # set of minimum Blender versions with a queue
ALL_JOBS = PREFIX + "jobs"             # zset job id -> created (ms), for admins
# Clean-up (cleanup.py): scene files are held by the jobs that need them.
FILE_REFS = PREFIX + "files:refs"          # hash sha -> number of jobs holding the file
FILE_HOLDERS = PREFIX + "files:holders"    # zset job id -> when it took its hold (ms)
FILE_RELEASED = PREFIX + "files:released"  # hash sha -> when its last holder let go (ms)
ARCHIVES = PREFIX + "archives"             # zset job id -> when its archive was finished (ms)
CLEANUP_LOCK = PREFIX + "lock:cleanup"
BLENDER = PREFIX + "blender"               # hash: the pinned Blender build (blender_builds.py)


def token(digest: str) -> str:
    return f"{PREFIX}token:{digest}"


def job(job_id: str) -> str:
    return f"{PREFIX}job:{job_id}"


def manifest(job_id: str) -> str:
    return f"{PREFIX}job:{job_id}:manifest"


def owner_jobs(owner: str) -> str:
    return f"{PREFIX}owner:{owner}:jobs"


def part(part_id: str) -> str:
    return f"{PREFIX}part:{part_id}"


def part_id(job_id: str, index: int) -> str:
    return f"{job_id}:{index}"


def job_of_part(pid: str) -> str:
    return pid.rsplit(":", 1)[0]


def worker(worker_id: str) -> str:
    return f"{PREFIX}worker:{worker_id}"


def assembly_lock(job_id: str) -> str:
    return f"{PREFIX}lock:assembly:{job_id}"


def files_held(job_id: str) -> str:
    """Set of the scene-file hashes a job holds (until it ends); also answers in O(1)
    whether a worker leasing one of its parts may fetch a file."""
    return f"{PREFIX}job:{job_id}:files"


def file_deleting(sha: str) -> str:
    return f"{PREFIX}files:deleting:{sha}"


def queue(min_version: int) -> str:
    return f"{PREFIX}queue:{min_version}"


class Scripts:
    """The farm's Lua scripts, registered on one Redis client.

    Each script is `_lib.lua` (shared helpers and key builders) followed by its
    own file; redis-py sends the SHA and falls back to the source after a Redis
    restart, so scripts survive a restarted server without re-registration.
    """

    NAMES = ("create_job", "claim", "heartbeat", "complete", "fail", "release", "cancel",
             "reap", "finish_assembly", "fail_assembly", "renew_lock",
             "hold_files", "release_files", "doom_file", "expire_archive")

    def __init__(self, r: redis.Redis) -> None:
        lib = _read("_lib.lua")
        for name in self.NAMES:
            setattr(self, name, r.register_script(lib + "\n" + _read(name + ".lua")))


def _read(name: str) -> str:
    return resources.files("framefarm.gateway").joinpath("lua", name).read_text()
