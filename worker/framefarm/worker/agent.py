"""The worker agent: register, claim parts, render them, report, heartbeat.

Each slot is a thread that long-polls the farm for a part, renders it with
Blender and uploads the frames under the part's lease token. A heartbeat thread
renews the leases it holds and stops Blender at once for parts the farm says to
abandon (a cancelled job, or a lease that went to another worker).

Stopping: SIGTERM (or Ctrl-C) stops claiming, stops Blender and hands every
held part back at once, so the farm requeues it without waiting for the lease to
run out; the whole stop takes at most STOP_S, whatever the gateways do (down,
frozen, slow). A second SIGTERM or Ctrl-C means "stop now": what can be handed
back within NOW_S is, and the process exits (Blender dies with it). SIGKILL
leaves the leases to expire.
"""
from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import socket
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from framefarm.common.api import FarmAPI
from framefarm.common.api_types import Lease, LeaseRef
from framefarm.common.frameset import FrameSpecError, PartSpan
from framefarm.common.http import FarmError, backoff

from . import finishing, previews
from .limits import Limits
from .render import (BlenderInfo, RenderCancelled, RenderError, RenderStats, choose_device, process_policy,
                     render_frames, slot_policy, usable_cores, warm_policy)
from .sandbox import NO_SANDBOX, Sandbox
from .scene_cache import CacheError, SceneCache
from .warm import WarmSettings, WarmSlot

log = logging.getLogger("framefarm.worker")

# The bounds of a stop (docs/operations.md): a graceful one, and one cut short by a second signal.
STOP_S = 10.0
NOW_S = 3.0
# Out of STOP_S, what is kept for handing back parts whose slot did not, and for unregistering.
HAND_BACK_S = 3.0
UNREGISTER_S = 1.5
# A failure with less than this free on the worker's disk is put down to the full disk: a
# frame that could not be written may leave no words of its own (Blender's log is on that
# disk too). The OS's and Blender's own words for it are recognised whatever is free.
LOW_DISK_BYTES = 16 * 1024 * 1024
_DISK_FULL = ("No space left on device", "Disk quota exceeded")
DISK_FULL_PAUSE_S = 60.0
# A claim answered "nothing" sooner than this share of its wait was not a long-poll the
# gateway held (it could not hold another, or was told not to wait): claiming again at
# once would turn idle workers into a tight loop, so the slot backs off (jittered,
# doubling up to EMPTY_BACKOFF_MAX_S) until a claim waits again or brings a part. A
# long-poll that ran its course is followed by the next one at once: that is what picks
# up a part queued on an idle farm within moments.
EARLY_EMPTY_SHARE = 0.5
EARLY_EMPTY_MIN_S = 1.0  # a farm whose claims do not wait at all (claim_wait_s 0) is no exception
EMPTY_BACKOFF_MAX_S = 10.0
# The jobs whose scenes warm slots hold, sent with each claim (the farm prefers their parts).
MAX_HELD = 16
# A slot claims its next part while the current one renders, this long before the render is
# expected to end (the job's measured seconds per frame, which a claim answers; never while
# none is known yet), and fetches that part's scene meanwhile: a new job's scene (gigabytes,
# for a production shot) then downloads while Blender works, not between parts. The part
# waits leased, renewed by the heartbeat, for about this long: the price is that another
# worker cannot take it meanwhile (`framefarm worker --no-prefetch` turns it off).
LOOKAHEAD_S = 10.0


@dataclass
class Held:
    part: Lease
    cancel: threading.Event = field(default_factory=threading.Event)
    handed_back: bool = False  # by its slot or by the stopping main thread, whichever comes first


@dataclass
class Ahead:
    """A slot's next part, claimed while its current part renders (LOOKAHEAD_S)."""
    done: threading.Event = field(default_factory=threading.Event)  # the render ended: claim nothing more
    claimed: threading.Event = field(default_factory=threading.Event)  # the claim was made, or never will be
    part: Lease | None = None
    fetching: threading.Thread | None = None  # claims, then fetches the part's scene


class Agent:
    def __init__(self, api: FarmAPI, info: BlenderInfo, *, workdir: Path, device: str = "auto",
                 slots: int | None = 1, name: str | None = None, cores: int | None = None,
                 sandbox: Sandbox = NO_SANDBOX, max_memory: int | None = None,
                 warm: WarmSettings | None = WarmSettings(), prefetch: bool = True) -> None:
        self.api, self.info = api, info
        self.sandbox, self.max_memory = sandbox, max_memory
        self.device = choose_device(device, info)
        self.name = name or f"{socket.gethostname()}-{os.getpid()}"
        self.cores = cores or usable_cores()
        self.slots = slot_policy(self.device, self.cores) if slots is None else slots  # None: `--slots auto`
        self.workdir = workdir
        self.cache = SceneCache(workdir / "cache")
        # The finishing kinds it advertises (encode: ffmpeg; merge-denoise: its Blender denoises).
        self.capabilities = finishing.capabilities(info, sandbox)
        # One WarmSlot per slot (None: the cold path, `framefarm worker --no-warm`).
        self.warm: list[WarmSlot] | None = None if warm is None else [
            WarmSlot(info, workdir / "warm" / f"slot-{i}", sandbox=sandbox, settings=warm)
            for i in range(self.slots)]
        self.prefetch = prefetch  # claim the next part and fetch its scene while a part renders
        self._fetching: dict[str, threading.Thread] = {}  # part id -> the thread fetching its scene ahead
        self.stop = threading.Event()
        self.stop_now = threading.Event()
        self._disk_full = threading.Event()  # set by a failure put down to a full disk
        self.held: dict[str, Held] = {}
        self._lock = threading.Lock()
        self._released = threading.Condition(self._lock)
        self.worker_id = ""
        self.heartbeat_s = 3.0
        self.claim_wait_s = 20.0
        self.lease_s = 10.0

    # -- lifecycle ---------------------------------------------------------------------
    def register(self) -> None:
        reply = self.api.register({
            "name": self.name, "blender_version": self.info.version, "blender": self.info.version_string,
            "device": self.device, "devices": self.info.devices, "slots": self.slots, "sandbox": self.sandbox.name,
            "capabilities": self.capabilities})
        self.worker_id = reply["id"]
        self.heartbeat_s, self.lease_s = reply["heartbeat_s"], reply["lease_s"]
        self.claim_wait_s = reply["claim_wait_s"]
        log.info("registered as %s (Blender %s, device %s, %d slot(s), sandbox %s)", self.worker_id,
                 self.info.version_string, self.device, self.slots, self.sandbox.name)

    def run(self) -> None:
        """Work until `self.stop` is set, then hand back what is held."""
        if not self._register_unless_stopped():
            return
        threads = [threading.Thread(target=self._heartbeat_loop, name="heartbeat", daemon=True)]
        threads += [threading.Thread(target=self._slot_loop, args=(i,), name=f"slot-{i}", daemon=True)
                    for i in range(self.slots)]
        for t in threads:
            t.start()
        self.stop.wait()
        self._wind_down()

    def _register_unless_stopped(self) -> bool:
        """Register, unless a stop comes first: with every gateway down or frozen, registering
        retries for minutes, and a stop must not wait for that (nothing is held yet, so
        nothing is lost). A registration that fails raises here, as before."""
        failed: list[BaseException] = []

        def register() -> None:
            try:
                self.register()
            except BaseException as e:  # re-raised on the main thread below
                failed.append(e)

        registering = threading.Thread(target=register, name="register", daemon=True)
        registering.start()
        while registering.is_alive() and not self.stop.wait(0.2):
            pass
        if failed:
            raise failed[0]
        if registering.is_alive():
            log.info("stopped before the farm answered the registration")
            return False
        return True

    def hurry(self) -> None:
        """A second stop signal: cut the graceful stop short (idempotent; any thread)."""
        self.stop.set()
        self.stop_now.set()
        with self._released:
            self._released.notify_all()

    def _wind_down(self) -> None:
        """Stop Blender, hand back every held part and unregister, within STOP_S (NOW_S
        once told to hurry) whatever the gateways do: each call that can outlast its
        share runs on a thread of its own and is left behind when its time is up (the
        process exits; a part not handed back waits for its lease to run out)."""
        deadline = time.monotonic() + STOP_S
        with self._lock:
            log.info("stopping: handing back %d held part(s)", len(self.held))
            for held in self.held.values():
                held.cancel.set()
        # Slots that are rendering stop Blender and hand their part back themselves;
        # slots waiting in a claim long-poll are not waited for.
        with self._released:
            self._released.wait_for(lambda: not self.held or self.stop_now.is_set(),
                                    timeout=max(0.0, deadline - HAND_BACK_S - UNREGISTER_S - time.monotonic()))
        if self.stop_now.is_set():
            deadline = min(deadline, time.monotonic() + NOW_S)
            log.warning("stopping now: handing back what the farm takes within %.0f s", NOW_S)
        for slot in self.warm or []:
            slot.kill_if_idle()  # a busy one is stopped by its slot, its part being cancelled
        with self._lock:
            left = [held for held in self.held.values() if not held.handed_back]
        _bounded([functools.partial(self._hand_back, held) for held in left], deadline - UNREGISTER_S)
        if not _bounded([self._unregister], deadline):
            log.warning("stopped without unregistering: no gateway answered in time")

    def _unregister(self) -> None:
        try:
            self.api.unregister(self.worker_id)
        except FarmError as e:
            log.warning("could not unregister: %s", e.message)

    # -- heartbeats --------------------------------------------------------------------
    def _heartbeat_loop(self) -> None:
        while not self.stop.wait(self.heartbeat_s):
            with self._lock:
                parts: list[LeaseRef] = [{"id": pid, "token": h.part["token"]} for pid, h in self.held.items()]
            if not parts:
                continue  # an idle worker's claim long-polls already keep it registered
            try:
                abandon = self.api.heartbeat(self.worker_id, parts)
            except FarmError as e:
                if e.code == "unknown_worker":
                    log.warning("the farm forgot this worker (silent too long); registering again")
                    self._reregister()
                else:
                    log.warning("heartbeat failed: %s", e.message)
                continue
            for pid in abandon:
                with self._lock:
                    held = self.held.get(pid)
                if held:
                    log.info("part %s is no longer ours (job cancelled or lease lost): stopping Blender", pid)
                    held.cancel.set()

    def _reregister(self) -> None:
        try:
            self.register()
        except FarmError as e:
            log.warning("registering again failed: %s", e.message)

    # -- parts -------------------------------------------------------------------------
    def _slot_loop(self, slot: int = 0) -> None:
        empty = 0  # claims in a row answered "nothing" without waiting
        part: Lease | None = None  # the next part, when the last result's answer brought one
        while not self.stop.is_set():
            if part is None:
                if self._disk_full.is_set():
                    self._wait_for_disk()
                    continue
                asked = time.monotonic()
                try:
                    part = self.api.claim(self.worker_id, self.claim_wait_s, held=self._held_jobs())
                except FarmError as e:
                    if e.code == "unknown_worker":
                        self._reregister()
                    else:
                        # The client already waited out Retry-After (429/503) until its retry window
                        # ran out; this pause is on top, jittered so a farm's workers spread out.
                        log.warning("claim failed: %s", e.message)
                        self.stop.wait(backoff(3, 2.0))
                    continue
                if part is None:
                    if time.monotonic() - asked < max(EARLY_EMPTY_MIN_S, EARLY_EMPTY_SHARE * self.claim_wait_s):
                        empty += 1
                        self.stop.wait(backoff(empty, cap=EMPTY_BACKOFF_MAX_S))
                    else:
                        empty = 0
                    continue
                empty = 0
            if self.stop.is_set():
                self._give_back(part)
                return
            part = self.process(part, slot)
        if part is not None:
            self._give_back(part)

    def _give_back(self, part: Lease) -> None:
        """Hand back a part this slot has not started: once, also when the stopping main thread
        hands back every held part (a part claimed ahead is held from its claim on)."""
        with self._lock:
            held = self.held.pop(part["id"], None)
            self._released.notify_all()
        if held is None:
            self._release(part)
        else:
            self._hand_back(held)

    def _held_jobs(self) -> list[str]:
        """The jobs whose scenes this worker's warm slots hold loaded (interface 2)."""
        held = [job for job in (slot.job for slot in self.warm or []) if job]
        return list(dict.fromkeys(held))[:MAX_HELD]

    def _wait_for_disk(self) -> None:
        """After a full disk, claim nothing for DISK_FULL_PAUSE_S, or until LOW_DISK_BYTES more
        are free than now (after the part's cleanup): claiming at once would only fail the next
        part too. The room the part's own cleanup made does not count: the released part is
        likely the next one offered, and it did not fit in that room, so resuming on it would
        hand the same part back and forth as fast as it can be fetched (a release counts no
        attempt, so nothing else would end that)."""
        needed = (self._free_disk() or 0) + LOW_DISK_BYTES
        log.warning("the disk under %s is full: claiming no part until it has %d MiB free (or for %.0f s)",
                    self.workdir, needed >> 20, DISK_FULL_PAUSE_S)
        until = time.monotonic() + DISK_FULL_PAUSE_S
        while time.monotonic() < until and not self.stop.wait(1.0):
            if (self._free_disk() or 0) >= needed:
                break
        self._disk_full.clear()

    def process(self, part: Lease, slot: int = 0) -> Lease | None:
        """Render `part` and send its result; the worker's next part when the result's answer
        brought one (the result and the next claim in one request), else None."""
        pid, token = part["id"], part["token"]
        with self._lock:  # a part claimed ahead is held already, its cancel event the heartbeat's
            held = self.held.setdefault(pid, Held(part))
        fetching = self._fetching.pop(pid, None)
        if fetching is not None:
            fetching.join()  # its scene, fetched while the last part rendered
        out = self.workdir / "parts" / f"{pid.replace(':', '-')}-{token}"
        ahead: Ahead | None = None
        try:
            if held.cancel.is_set():  # abandoned while it waited its turn (its job was cancelled)
                log.info("part %s abandoned before it started", pid)
                return None
            if part.get("kind", finishing.RENDER) != finishing.RENDER:  # a job's finishing task (finishing.py)
                self.api.upload_result(pid, token, self._zip(self._finish(part, held, out), out / "result.zip"))
                log.info("part %s done", pid)
                return None
            span = PartSpan.from_json(part.get("span"))
            log.info("part %s: frames %d-%d step %d (%d frames, attempt %d)", pid, span.start, span.end,
                     span.step, span.count, part["attempts"] + 1)
            scene_dir = self._scene(part)
            per_slot = max(1, self.cores // self.slots)
            limits = Limits(part.get("max_frame_seconds"), self.max_memory)
            spf = part.get("seconds_per_frame")
            # A still's piece renders cold (still_piece.py).
            warm = self.warm[slot] if self.warm is not None and not part.get("piece") else None
            processes = kept = process_policy(span.count, per_slot, spf)
            if warm is not None:  # the slot keeps `kept` loaded for the job; the part renders in `processes`
                kept, processes = warm_policy(span.count, part.get("frames_left"), per_slot, spf)
            # Not before the job's time per frame is known: the farm sizes the next part by what this
            # one measures (a part claimed sooner would be cut as one more small first part).
            if self.prefetch and spf is not None and not self.stop.is_set():
                ahead = self._look_ahead(part, spf * span.count / min(processes, span.count))
            stats = RenderStats()
            if warm is not None:
                files = warm.render(part["job"], scene_dir / part["main"], span, out / "frames",
                                    device=self.device, processes=kept, use=processes, scene_root=scene_dir,
                                    cancel=held.cancel, log_path=out / "blender.log", limits=limits,
                                    output_format=part.get("format"), stats=stats)
            else:
                files = render_frames(self.info, scene_dir / part["main"], span, out / "frames",
                                      device=self.device, processes=processes,
                                      cancel=held.cancel, log_path=out / "blender.log", sandbox=self.sandbox,
                                      scene_root=scene_dir, limits=limits, output_format=part.get("format"),
                                      stats=stats, still_piece=part.get("piece"))
            archive = self._zip(files, out / "result.zip", stats)
            following = self._settle(ahead)
            # No wait for the next part here: the result is counted first, and a claim's long-poll
            # inside the upload would, if the connection broke, send the counted result again.
            reply = self.api.upload_result(pid, token, archive, held=self._held_jobs(),
                                           next_wait=None if self.stop.is_set() or following else 0)
            log.info("part %s done", pid)
            return following or reply.get("next")
        except RenderCancelled:
            if self.stop.is_set():
                self._hand_back(held)
            else:
                log.info("part %s abandoned", pid)
        except RenderError as e:
            log.warning("part %s failed: %s", pid, e.message)
            self._report(part, e.message, e.log_tail, e.deterministic)
        except FrameSpecError as e:
            self._report(part, f"the farm sent a part this worker cannot read: {e}", "", False)
        except CacheError as e:
            self._report(part, f"the scene could not be made ready: {e}", "", e.deterministic)
        except FarmError as e:
            if e.status == 409:
                log.warning("part %s: the farm refused our result (%s)", pid, e.message)
            elif e.status == 400:
                self._report(part, f"the farm rejected the result: {e.message}", "", False)
            else:
                log.error("part %s: %s", pid, e.message)
        except OSError as e:
            self._report(part, f"worker error: {e}", "", False)
        finally:
            with self._lock:
                self.held.pop(pid, None)
                self._released.notify_all()
            shutil.rmtree(out, ignore_errors=True)
        return self._settle(ahead)  # a part claimed ahead is still this slot's next, whatever became of this one

    def _look_ahead(self, current: Lease, expected_s: float) -> Ahead:
        """Claim the slot's next part LOOKAHEAD_S before the current render is expected to end,
        on a thread, and fetch its scene there; `_settle` ends it when the render is done."""
        ahead = Ahead()

        def run() -> None:
            try:
                if ahead.done.wait(max(0.0, expected_s - LOOKAHEAD_S)) or self.stop.is_set():
                    return
                held = list(dict.fromkeys([current["job"], *self._held_jobs()]))[:MAX_HELD]
                part = self.api.claim(self.worker_id, 0, held=held)
                if part is None:
                    return
                with self._lock:
                    self.held[part["id"]] = Held(part)  # renewed by the heartbeat from now on
                ahead.part = part
            except FarmError as e:  # the result's answer claims the next part instead
                log.info("claiming ahead failed: %s", e.message)
                return
            finally:
                ahead.claimed.set()
            if part.get("kind", finishing.RENDER) == finishing.RENDER:
                try:
                    self._scene(part)
                except (CacheError, FarmError, OSError) as e:  # met again, and reported, when it renders
                    log.info("fetching part %s's scene ahead failed: %s", part["id"], e)

        thread = threading.Thread(target=run, name="look-ahead", daemon=True)
        ahead.fetching = thread
        thread.start()
        return ahead

    def _settle(self, ahead: Ahead | None) -> Lease | None:
        """End a look-ahead: no claim after this; the part it claimed, if any (its scene may still
        be on its way: `process` waits for that before rendering it)."""
        if ahead is None:
            return None
        ahead.done.set()
        ahead.claimed.wait()
        part, ahead.part = ahead.part, None  # handed on once
        if part is not None and ahead.fetching is not None:
            self._fetching[part["id"]] = ahead.fetching
        return part

    def _finish(self, part: Lease, held: Held, out: Path) -> list[Path]:
        def scene() -> tuple[Path, Path]:
            root = self._scene(part)
            return root, root / part["main"]
        return finishing.run(self.api, part, out, scene=scene, blender=self.info, sandbox=self.sandbox,
                             cancel=held.cancel)

    def _scene(self, part: Lease) -> Path:
        pid, token = part["id"], part["token"]
        scene = self.api.scene(pid, token)
        urls = scene.get("urls", {})  # signed storage URLs, where the farm's storage can sign them
        return self.cache.scene(part["scene_hash"][:16] + "-" + part["job"], scene["files"],
                                lambda sha, dest: self.api.fetch_file(pid, token, sha, dest, urls.get(sha)))

    @staticmethod
    def _zip(files: list[Path], dest: Path, stats: RenderStats | None = None) -> Path:
        # Stored, not deflated: rendered images are already compressed.
        with zipfile.ZipFile(dest, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            for f in files:
                zf.write(f, arcname=f.name)
            if stats is not None and stats.frames:
                # What each frame cost, for the farm's part sizing and ETA (interface 1); small,
                # so deflated. A gateway that predates it refuses the entry (400 bad_result).
                zf.writestr("_meta/stats.json", json.dumps(stats.as_json()), compress_type=zipfile.ZIP_DEFLATED)
            if stats is not None:  # a frame part (not a finishing task's output): the dashboard's thumbnails
                previews.add(zf, files)
        return dest

    def _report(self, part: Lease, message: str, log_tail: str, deterministic: bool) -> None:
        free = self._free_disk()
        if free is not None and (free < LOW_DISK_BYTES or any(text in message for text in _DISK_FULL)):
            # The worker's fault, not the scene's: the part is released, not failed, so no attempt
            # is counted and the reason, said plainly, is the part's last error. This worker cleans
            # the part up and claims nothing until it has room (docs/operations.md: what bounds a
            # part handed from one full worker to the next).
            self._disk_full.set()
            self._release(part, f"this worker's disk is full ({free // 1024} KiB free under {self.workdir}): "
                                f"{message}")
            return
        try:
            outcome = self.api.report_failure(part["id"], part["token"], message, log_tail, deterministic)
            log.info("part %s: failure reported (%s)", part["id"], outcome.get("outcome"))
        except FarmError as e:
            log.warning("part %s: could not report the failure: %s", part["id"], e.message)

    def _free_disk(self) -> int | None:
        try:
            return shutil.disk_usage(self.workdir).free
        except OSError:
            return None

    def _hand_back(self, held: Held) -> None:
        """Release a held part once, whether its slot or the stopping main thread gets there first."""
        with self._lock:
            if held.handed_back:
                return
            held.handed_back = True
        self._release(held.part)

    def _release(self, part: Lease, reason: str = "") -> None:
        try:
            outcome = self.api.release(part["id"], part["token"], reason)
            log.info("part %s handed back to the farm (%s)%s", part["id"], outcome.get("outcome"),
                     f": {reason}" if reason else "")
        except FarmError as e:
            log.warning("part %s: could not hand it back (%s); its lease will expire", part["id"], e.message)


def _bounded(calls: list[Callable[[], object]], deadline: float) -> bool:
    """Run `calls` at once, each on a daemon thread, and wait for them until `deadline`
    (time.monotonic()); whether all of them finished. A call to a frozen gateway can
    block for its whole read timeout, and a stop must not wait for that."""
    threads = [threading.Thread(target=call, name="stopping", daemon=True) for call in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=max(0.0, deadline - time.monotonic()))
    return not any(t.is_alive() for t in threads)
