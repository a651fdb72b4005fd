"""Every Redis key and every storage object name of the farm, in one place.

Lua scripts build the same Redis keys, so their key helpers are generated from this
module (`lua_prelude`) when the scripts are registered: there is no hand-kept mirror
to fall out of step. A key that Lua uses is declared with `_key` (a builder) or
`_const` (a fixed name); each declaration names its Lua helper, and
tests/unit/test_keys.py checks that every helper a script calls is generated here.
"""
from __future__ import annotations

PREFIX = "ff:"

_LUA: dict[str, str] = {}  # Lua helper name -> its definition, in declaration order


class Key:
    """A key builder: `template`'s `{}` slots filled in order, after the farm's prefix."""

    def __init__(self, lua_name: str, template: str) -> None:
        self.lua_name, self.template = lua_name, template
        self.slots = template.count("{}")
        args = [f"a{i}" for i in range(1, self.slots + 1)]
        pieces = template.split("{}")
        expr = " .. ".join(["P"] + [x for i, piece in enumerate(pieces)
                                    for x in ([repr(piece)] if piece else []) + (args[i:i + 1])])
        _LUA[lua_name] = f"local function {lua_name}({', '.join(args)}) return {expr} end"

    def __call__(self, *parts: object) -> str:
        if len(parts) != self.slots:
            raise TypeError(f"key {self.template!r} takes {self.slots} part(s), got {len(parts)}")
        return PREFIX + self.template.format(*parts)


def _key(lua_name: str, template: str) -> Key:
    return Key(lua_name, template)


def _const(lua_name: str, suffix: str) -> str:
    _LUA[lua_name] = f"local {lua_name} = P .. {suffix!r}"
    return PREFIX + suffix


# --- Redis: farm-wide ---------------------------------------------------------------
SECRET = PREFIX + "secret"                        # HMAC key of signed links (signing.py)
EVENTS = _const("K_EVENTS", "events")             # pub/sub channel: "work", "assemble" or "job:<id>"
WORKERS = _const("K_WORKERS", "workers")          # zset worker id -> last seen (ms)
GATEWAYS = PREFIX + "gateways"                    # zset url -> last seen (ms)
LEASES = _const("K_LEASES", "leases")             # zset part id -> lease deadline (ms)
ASSEMBLY = _const("K_ASSEMBLY", "assembly")       # zset job id -> time it became ready
QUEUES = _const("K_QUEUES", "queues")             # set of minimum Blender versions with a job queue
ALL_JOBS = _const("K_ALL_JOBS", "jobs")           # zset job id -> created (ms), for admins
FENCE = _const("K_FENCE", "fence")                # counter: the last lease token handed out
SEQ = _const("K_SEQ", "seq")                      # counter: submission order of jobs
STAGING = _const("K_STAGING", "jobs:staging")     # zset job id -> deadline (ms) of a job being written
ESTIMATED = _const("K_ESTIMATED", "jobs:estimated")  # zset job id -> when its samples were in (estimates.py)
# Clean-up (cleanup.py): scene files are held by the jobs that need them.
FILE_REFS = _const("K_FILE_REFS", "files:refs")              # hash sha -> number of jobs holding it
FILE_HOLDERS = _const("K_FILE_HOLDERS", "files:holders")     # zset job id -> when it took its hold
FILE_RELEASED = _const("K_FILE_RELEASED", "files:released")  # hash sha -> when its last holder let go
ARCHIVES = _const("K_ARCHIVES", "archives")                  # zset job id -> when its archive finished
CLEANUP_LOCK = PREFIX + "lock:cleanup"
# Ended jobs whose records clean-up deletes: zset job id -> when (ms; cleanup.remove_records).
RECORDS_DUE = _const("K_RECORDS_DUE", "jobs:records_due")
# Farm-wide totals the scripts keep for GET /metrics (metrics.py): lease_expiries, retries, ...
STATS = _const("K_STATS", "stats")
BLENDER = PREFIX + "blender"                      # hash: the pinned Blender build (blender_builds.py)
# Webhooks (webhooks.py): farm-wide subscriptions (hash id -> target JSON); what is due to be
# sent (zset "job:<id>" for a job that ended, "d:<job>:<target>" for one delivery -> when, ms);
# each delivery's target and tries (hash entry -> JSON).
WEBHOOKS = _const("K_WEBHOOKS", "webhooks")
WEBHOOKS_DUE = _const("K_WEBHOOKS_DUE", "webhooks:due")
WEBHOOK_ENTRIES = PREFIX + "webhooks:entries"

# --- Redis: per object ----------------------------------------------------------------
token = _key("k_token", "token:{}")               # hash of one API token, by its SHA-256
job = _key("k_job", "job:{}")                     # hash: the job's fields
manifest = _key("k_manifest", "job:{}:manifest")  # JSON: relative path -> sha
job_queue = _key("k_job_queue", "job:{}:queue")   # zset part index -> index: the job's queued parts
# zset part index -> index: an estimate's parts after its samples, queued when it is resumed (estimates.py)
job_held = _key("k_job_held", "job:{}:held")
blocklist = _key("k_block", "job:{}:block")       # set of worker ids kept away from the job
worker_failures = _key("k_wfail", "job:{}:wfail")  # hash worker id -> failures on this job
# Set of the scene-file hashes a job holds (until it ends); also answers in O(1)
# whether a worker leasing one of its parts may fetch a file.
files_held = _key("k_held", "job:{}:files")
owner_jobs = _key("k_owner_jobs", "owner:{}:jobs")  # zset job id -> created (ms)
idempotency = _key("k_idem", "idem:{}:{}")        # owner, client key -> job id
part = _key("k_part", "part:{}")                  # hash: the part's span, state and lease
worker = _key("k_worker", "worker:{}")            # hash: the worker's registration
worker_parts = _key("k_wparts", "worker:{}:parts")  # set of the part ids a worker holds
worker_blocked = _key("k_wblock", "worker:{}:blocked")  # set of the jobs a worker is kept away from
# A zset per minimum Blender version of the jobs with queued parts, score = priority then age.
queue = _key("k_queue", "queue:{}")
assembly_lock = _key("k_assembly_lock", "lock:assembly:{}")
file_deleting = _key("k_deleting", "files:deleting:{}")
# Set of the owners who uploaded the scene file `sha` (scene_files.py): only they may use it.
file_owners = _key("k_file_owners", "files:owners:{}")


def owner_active(owner: str) -> str:
    """Zset job id -> when submitted (ms): an owner's jobs that may not have ended yet (quotas.py)."""
    return f"{PREFIX}owner:{owner}:active"


def owner_workers(owner: str) -> str:
    """Zset worker id -> when registered (ms): the workers an owner's token registered that may
    still be live (quotas.py: a worker whose record expired is dropped when next counted)."""
    return f"{PREFIX}owner:{owner}:workers"


REQUEST_COUNTS = PREFIX + "rate:"


def request_count(owner: str, window: int) -> str:
    """Counter of one token's requests in one fixed window of a minute (quotas.py)."""
    return f"{REQUEST_COUNTS}{owner}:{window}"


def part_id(job_id: str, index: int) -> str:
    return f"{job_id}:{index}"


def job_of_part(pid: str) -> str:
    return pid.rsplit(":", 1)[0]


# --- Storage object names -------------------------------------------------------------
FILES = "files"                                   # scene files, by content hash
INCOMING_FILES = "files/incoming/"                # direct uploads waiting for their commit


def scene_file(sha: str) -> str:
    return f"{FILES}/{sha}"


def incoming_file(sha: str, upload_id: str) -> str:
    """Where a direct upload of a scene file waits for its commit. Under `files/`, so it is
    kept in the same place as the file it becomes (the move stays inside one bucket)."""
    return f"{INCOMING_FILES}{sha}-{upload_id}"


def job_parts(job_id: str) -> str:
    """The prefix of every part result of a job (deleted together when the job ends)."""
    return f"parts/{job_id}"


def part_result(job_id: str, index: int, lease_token: str) -> str:
    # The token is in the name so a late upload of a reassigned part can never
    # overwrite the result that counted.
    return f"{job_parts(job_id)}/{index}-{lease_token}.zip"


def part_upload(job_id: str, index: int, lease_token: str, upload_id: str) -> str:
    """Where a result sent straight to storage waits to be checked; under the job's parts,
    so the job's clean-up takes any that were never committed."""
    return f"{job_parts(job_id)}/incoming/{index}-{lease_token}-{upload_id}.zip"


def archive(job_id: str) -> str:
    return f"archives/{job_id}.zip"


def movie(job_id: str) -> str:
    """An encode job's movie, kept beside its zip for its own link (finishing.keep_movie)."""
    return f"archives/{job_id}-movie"


def previews(job_id: str) -> str:
    """A done job's frame previews and times, for the dashboard (dashboard/meta.py), kept with its archive."""
    return f"archives/{job_id}-previews.zip"


def blender_build(sha: str, filename: str) -> str:
    return f"blender/{sha}/{filename}"


def lua_prelude() -> str:
    """The Lua key helpers, generated from the declarations above."""
    return "\n".join(["-- Generated by framefarm/gateway/keys.py: every key a script builds.",
                      f"local P = {PREFIX!r}", *_LUA.values()])
