"""What a worker reports about a leased part: its frames (the result), a failure, a release.

Every report names the part's lease token and the worker's id; `leased` answers 409 unless
that worker holds the part under that token, and 403 unless the caller's token registered
that worker. So a worker whose lease ran out (the part went to another worker, or the job
ended) changes nothing, and neither does anyone else who learns a token or a worker id.
A result counts only once it is checked: a readable zip
whose entries are exactly the part's frames, one each, intact. It arrives either
streamed through a gateway (`store_streamed`) or sent straight to storage and committed
(`upload_target`, then `commit_uploaded`); both end in `_count`, which counts the part
done in one step (lua/complete.lua) or deletes the result if the lease went stale meanwhile.
"""
from __future__ import annotations

import lzma
import re
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import IO, BinaryIO, cast

from framefarm.common.frameset import PartSpan

from . import finishing, framestats, keys, metrics, parts, stills, uploads, workers
from .errors import ApiError, bad_request, conflict, not_found
from .farm import Farm
from .framestats import PartStats
from .storage import ObjectMissing

# Blender's frame names under the `####` pattern the workers use: 0250.png.
_FRAME_NAME = re.compile(r"(\d{4,})(\.[A-Za-z0-9]{1,8})?")


class Outcome(StrEnum):
    """What became of a part handed back (lua/fail.lua, lua/release.lua)."""

    REQUEUED = "requeued"  # queued again for any worker
    FAILED = "failed"      # out of attempts (or a deterministic failure): the job failed
    ENDED = "ended"        # its job had already ended


@dataclass(frozen=True)
class LeasedPart:
    """A part leased to `worker_id` under `token`, as the caller showed."""

    id: str
    job_id: str
    token: str
    worker_id: str
    span: PartSpan
    kind: str = finishing.RENDER  # or the finishing part's kind (finishing.py)
    still_piece: bool = False  # a piece of a split still (stills.py), whose frame must be OpenEXR

    def frames(self) -> list[int] | None:
        """The frames its result must hold, exactly; None for a finishing part, whose result is files."""
        return self.span.frames() if self.kind == finishing.RENDER else None

    def lease_args(self) -> list[str]:
        """The lease as the Lua scripts check it (lua/_lib.lua holds_lease)."""
        return [self.id, self.token, self.worker_id]


def leased(farm: Farm, pid: str, token: str, worker_id: str, owner: str) -> LeasedPart:
    """The part, if the worker `worker_id`, registered under `owner`'s token, holds its lease
    under `token`; else 404 (no such part or worker), 403 (another token's worker) or 409."""
    if ":" not in pid:
        raise not_found(f"part {pid}")
    pipe = farm.redis.pipeline(transaction=False)  # one round trip for all three
    pipe.hgetall(keys.part(pid))
    pipe.hget(keys.worker(worker_id), "owner")
    pipe.hget(keys.job(keys.job_of_part(pid)), stills.PIECES_FIELD)
    part, registered_by, still_pieces = cast(tuple[dict[str, str], str | None, str | None], pipe.execute())
    if not part:
        raise not_found(f"part {pid}")
    workers.owned(worker_id, {"owner": registered_by} if registered_by else {}, owner)
    if part.get("state") != "leased" or part.get("token") != token or part.get("worker") != worker_id:
        raise conflict(f"the lease on part {pid} is stale or missing (or not worker {worker_id}'s); the part is "
                       f"{part.get('state')}", "stale_lease")
    kind = part.get("kind", finishing.RENDER)
    return LeasedPart(pid, part["job"], token, worker_id, parts.span_from([part[f] for f in parts.SPAN_FIELDS]),
                      kind, stills.is_piece(kind, still_pieces))


def frame_of(name: str) -> int | None:
    m = _FRAME_NAME.fullmatch(name)
    return int(m.group(1)) if m else None


@dataclass(frozen=True)
class Bounds:
    """What a part's result may unpack to: `max_bytes` in all (its frames' worth) and, for an
    entry past `RATIO_FLOOR`, at most `max_ratio` times its packed size. The gateway does not
    know a scene's resolution or format, so a frame's worth is the farm's `max_frame_bytes`."""

    max_bytes: int
    max_ratio: int

    @classmethod
    def of(cls, farm: Farm, frames: int) -> "Bounds":
        s = farm.settings
        return cls(frames * s.max_frame_bytes, s.max_result_ratio)


# Entries unpacking to less than this are never refused for their ratio: a small frame
# (a flat colour) may pack very well, and it cannot weigh much whatever its ratio.
RATIO_FLOOR = 1024 * 1024
READ_BLOCK = 1024 * 1024


class ResultTooLarge(ApiError):
    """The result would unpack past its bounds (a zip bomb, or frames no scene renders)."""

    def __init__(self, message: str) -> None:
        super().__init__(413, "result_too_large", message)


def _check_sizes(zf: zipfile.ZipFile, infos: list[zipfile.ZipInfo], bounds: Bounds) -> None:
    """Refuse by the sizes the zip declares, then read every entry counting the bytes it really
    unpacks to (never trusting the declared sizes), which also checks each entry's CRC."""
    declared = sum(i.file_size for i in infos)
    if declared > bounds.max_bytes:
        raise ResultTooLarge(f"the result declares {declared} bytes unpacked, more than its frames can weigh "
                             f"({bounds.max_bytes} bytes: FRAMEFARM_MAX_FRAME_BYTES per frame)")
    for info in infos:
        _check_ratio(info.filename, info.file_size, info.compress_size, bounds)
    total = 0
    for info in infos:
        size = 0
        with zf.open(info) as fh:
            while block := fh.read(READ_BLOCK):
                size += len(block)
                total += len(block)
                if total > bounds.max_bytes:
                    raise ResultTooLarge(f"the result unpacks to more than its frames can weigh "
                                         f"({bounds.max_bytes} bytes: FRAMEFARM_MAX_FRAME_BYTES per frame)")
                _check_ratio(info.filename, size, info.compress_size, bounds)


def _check_ratio(name: str, unpacked: int, packed: int, bounds: Bounds) -> None:
    if unpacked > max(RATIO_FLOOR, bounds.max_ratio * packed):
        raise ResultTooLarge(f"{name} unpacks to {unpacked} bytes from {packed}, more than "
                             f"{bounds.max_ratio} times its packed size (FRAMEFARM_MAX_RESULT_RATIO): "
                             f"a zip bomb, not rendered frames")


def check_zip(path: Path | IO[bytes], frames: list[int] | None, bounds: Bounds, piece: bool = False) -> PartStats:
    """Raise a 400 unless the zip holds exactly `frames`, once each, intact, and at most the
    `_meta/` entries framestats.py allows; a 413 (ResultTooLarge) when its frames would unpack
    past `bounds`. Returns what the worker measured (framestats.NO_STATS when it sent nothing).
    `frames` None: a finishing part's result, plain-named files (finishing.check_names). A
    still's `piece`: its frame must be OpenEXR too (stills.check_piece)."""
    try:
        with zipfile.ZipFile(path) as zf:
            if frames is None:  # a finishing part's files: named plainly, bounded like frames
                finishing.check_names(zf.infolist())
                _check_sizes(zf, zf.infolist(), bounds)
                return framestats.NO_STATS
            seen: dict[int, str] = {}
            frame_infos, meta_infos = [], []
            for info in zf.infolist():
                if framestats.is_meta(info.filename):
                    meta_infos.append(info)
                    continue
                frame_infos.append(info)
                frame = frame_of(info.filename)
                if frame is None or info.is_dir():
                    raise bad_request(f"unexpected entry {info.filename!r} in the result; "
                                      f"entries must be frame files such as 0001.png", "bad_result")
                if frame in seen:
                    raise bad_request(f"frame {frame} appears twice in the result", "bad_result")
                seen[frame] = info.filename
            expected = set(frames)
            if set(seen) != expected:
                missing = sorted(expected - set(seen))[:10]
                extra = sorted(set(seen) - expected)[:10]
                raise bad_request(f"the result does not hold the part's frames (missing {missing}, "
                                  f"unexpected {extra})", "bad_result")
            framestats.check_names(meta_infos, frames)
            _check_sizes(zf, frame_infos, bounds)
            if piece:
                stills.check_piece(zf, frame_infos)
            return framestats.read(zf, meta_infos, frames)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, NotImplementedError, RuntimeError,
            OSError, zlib.error, lzma.LZMAError) as e:
        # Corrupt compressed data, an unknown compression method or an encrypted entry
        # surface as these, not as BadZipFile; each is the worker's bad zip, not a bug here.
        raise bad_request(f"the result is not a readable zip: {e}", "bad_result") from None


def _check_stream(src: BinaryIO, frames: list[int] | None, limit: int, bounds: Bounds,
                  piece: bool = False) -> PartStats:
    """Spool a result to a temporary file (zipfile must seek) and check it."""
    with tempfile.TemporaryFile(suffix=".zip") as tmp:
        uploads.drain(src, limit, copy_to=tmp)
        tmp.seek(0)
        return check_zip(tmp, frames, bounds, piece)


def _refused(farm: Farm, part: LeasedPart, e: ResultTooLarge) -> ApiError:
    """A result past its bounds is not retried as it is: the attempt fails with the reason
    (so the job's error says it, should the part run out of attempts)."""
    outcome = fail(farm, part, f"the worker's result was refused: {e.message}", "", False)
    then = {Outcome.REQUEUED: "the part is queued again", Outcome.FAILED: "the job failed",
            Outcome.ENDED: "its job had already ended"}[outcome]
    return ResultTooLarge(f"{e.message}; nothing was stored and this attempt failed ({then})")


def _result_key(part: LeasedPart) -> str:
    return keys.part_result(part.job_id, part.span.index, part.token)


def store_streamed(farm: Farm, part: LeasedPart) -> str:
    """Store the request body as the part's result, check it and count it; returns the job's status."""
    key = _result_key(part)
    limit = farm.settings.max_upload_bytes
    uploads.stream_to(farm.storage, key, limit)
    bounds = Bounds.of(farm, part.span.count)
    try:
        local = farm.storage.local_path(key)
        if local is not None:
            stats = check_zip(local, part.frames(), bounds, part.still_piece)
        else:
            with farm.storage.open_read(key) as src:
                stats = _check_stream(src, part.frames(), limit, bounds, part.still_piece)
    except ResultTooLarge as e:
        farm.storage.delete(key)
        raise _refused(farm, part, e) from None
    except BaseException:
        farm.storage.delete(key)
        raise
    return _count(farm, part, key, stats)


def upload_target(farm: Farm, part: LeasedPart, upload_id: str, size: int) -> str | None:
    """A URL to send the result straight to storage, or None where the storage takes no direct uploads."""
    return farm.storage.upload_url(keys.part_upload(part.job_id, part.span.index, part.token, upload_id), size)


def commit_uploaded(farm: Farm, part: LeasedPart, upload_id: str) -> str:
    """Check a result sent to its upload URL, keep it and count it; returns the job's status."""
    src = keys.part_upload(part.job_id, part.span.index, part.token, upload_id)
    key = _result_key(part)
    limit = farm.settings.max_upload_bytes
    bounds = Bounds.of(farm, part.span.count)
    measured: list[PartStats] = []
    try:
        farm.storage.promote(src, key, lambda fh: measured.append(
            _check_stream(fh, part.frames(), limit, bounds, part.still_piece)))
    except ObjectMissing:
        raise ApiError(404, "no_upload", f"no finished upload of part {part.id}'s result under this id: "
                                         "send it to its upload URL first") from None
    except ResultTooLarge as e:
        farm.storage.delete(src)
        raise _refused(farm, part, e) from None
    except ApiError:
        farm.storage.delete(src)
        raise
    return _count(farm, part, key, measured[-1] if measured else framestats.NO_STATS)


def _count(farm: Farm, part: LeasedPart, key: str, stats: PartStats) -> str:
    """Count a checked result stored under `key`, and its measurements into its job's; a stale
    lease or an ended job drops it."""
    try:
        res = farm.scripts.complete(args=[*part.lease_args(), key, *stats.script_args()])
    except BaseException:
        farm.storage.delete(key)
        raise
    if res[0] == "stale":
        farm.storage.delete(key)
        raise conflict(f"the lease on part {part.id} went stale during the upload", "stale_lease")
    if res[0] == "ended":
        farm.storage.delete(key)
        raise conflict(f"the job of part {part.id} is {res[1]}", "job_ended")
    metrics.result_counted(part.span.count, stats)
    return res[1]


def fail(farm: Farm, part: LeasedPart, message: str, log_tail: str, deterministic: bool) -> Outcome:
    """Record a failed render."""
    farm.redis.hset(keys.part(part.id), "log_tail", log_tail)
    s = farm.settings
    res = farm.scripts.fail(args=[*part.lease_args(), message, "1" if deterministic else "0",
                                  s.max_attempts, s.block_after])
    if res[0] == "stale":
        raise conflict(f"the lease on part {part.id} is stale", "stale_lease")
    return Outcome(res[0])


def release(farm: Farm, part: LeasedPart, reason: str = "") -> Outcome:
    """A worker stopping gracefully, or unable to take the part (its disk is full), hands
    the part back without counting an attempt; its reason becomes the part's last error."""
    res = farm.scripts.release(args=[*part.lease_args(), reason])
    if res[0] == "stale":
        raise conflict(f"the lease on part {part.id} is stale", "stale_lease")
    return Outcome(res[0])
