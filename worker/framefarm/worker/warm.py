"""Blender kept warm: a worker slot's Blender processes live on between parts of one job.

A cold part (render.render_frames) starts Blender, which loads the scene, renders the
part's frames and exits: every part pays the start-up and the scene load again (about a
second for a small scene, minutes for a production one). A slot with a `WarmSlot` instead
keeps its Blender processes, with the job's scene loaded, and sends each new part's frames
to them over a pipe (blender_warm.py's control loop and protocol): the scene loads once per
job per slot.

Everything else is as cold: the same command line up to the script (so the same output path,
format, threads and device), blender_setup's checks on every part, the same frame files,
frame checks, error texts, `max_frame_seconds` per frame and `--max-blender-memory` ceiling.
The pixels are the same (tests/system/test_warm.py renders frames both ways and compares
them exactly).

A slot's processes are replaced (stopped, and started again for the next part):
- when the next part is of another job (or needs another device or output format);
- when a part fails in any way (the part is retried as today);
- one alone, when it crashed or exited between parts (the others keep the scene);
- when a part is cancelled, abandoned, or the worker stops: at once, as a cold Blender is;
- when their resident memory has grown past the limit after a part (`max_memory`, else twice
  what they held after their first part: a leak, or caches that only grow);
- after `max_parts` parts (a bound on anything else that accumulates in a long session);
- when idle: a process that receives no request for `idle_s` exits by itself (its memory is
  freed once the job is over, even while the worker waits or is frozen), and the worker does not
  reuse one idle for more than half of that, so a request never meets a process that is exiting.
  A process the part does not render in (a spare kept for the job's longer parts, or one done
  with its slice) is pinged meanwhile, so it is not idle while its slot works.

How many processes a slot keeps for a job, and how many a part renders in, is
render.warm_policy's: a spare loads the scene while a one-frame part renders.

In the sandbox a process's folders are bound when it starts, so each slot has a folder of
its own (output and scratch) that every process of the slot writes to; each part's frames are
moved from there into the part's folder once checked.
"""
from __future__ import annotations

import contextlib
import dataclasses
import inspect
import json
import logging
import os
import secrets
import shutil
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from framefarm.common.frameset import PartSpan

from .blender_setup import _blender_setup
from .blender_warm import _blender_warm
from .limits import NO_LIMITS, FrameClock, FrameStat, Limits, format_size, tree_rss
from .render import (BlenderInfo, RenderCancelled, RenderError, RenderStats, _Blender, _failure, _over_limit,
                     _stop, _verify, blender_command, choose_device, slices, usable_cores)
from .sandbox import NO_SANDBOX, Sandbox

log = logging.getLogger("framefarm.worker")

# The marker's fixed part; each process adds a random word of its own.
MARKER = "FRAMEFARM-WARM-"
POLL_S = 0.1


@dataclass(frozen=True)
class WarmSettings:
    """How long a warm Blender may live (`framefarm worker --warm-parts/--warm-max-memory`)."""

    max_parts: int = 50
    max_memory: int | None = None  # bytes; None: twice the processes' memory after their first part
    # A warm Blender that hears nothing for this long exits by itself (blender_warm.py): one
    # left by a finished job, or by a frozen worker, gives its memory back. The worker only
    # reuses one that has been idle for less than half of it.
    idle_s: float = 20.0


@dataclass(frozen=True)
class _Key:
    """What a slot's processes hold: a part of another key needs new ones."""

    job: str
    scene: Path
    device: str
    output_format: str | None


class WarmSlot:
    """One slot's warm Blender processes (one job's scene), used by that slot's thread only;
    `close` may come from any thread."""

    def __init__(self, info: BlenderInfo, folder: Path, *, sandbox: Sandbox = NO_SANDBOX,
                 settings: WarmSettings = WarmSettings()) -> None:
        if "#" in str(folder):
            raise ValueError(f"warm folder {folder} contains '#', which Blender reads as a frame number")
        self.info, self.sandbox, self.settings = info, sandbox, settings
        self.folder = folder.resolve()
        self._key: _Key | None = None
        self._runs: list[_Blender] = []
        self._parts = 0
        self._baseline: int | None = None  # the processes' memory after their first part
        self._idle_since = 0.0  # when the processes answered their last request
        # Per process: when it started, last answered a request or was pinged (_keep_spares).
        self._asked: dict[_Blender, float] = {}
        self._serial = 0  # numbers the processes' scripts and notes in the slot's folder
        self._log_lock = threading.Lock()
        self._news = threading.Event()  # a process answered or exited (_Blender.news): _await wakes
        self._lock = threading.Lock()  # the processes: started, used and stopped under it

    @property
    def job(self) -> str | None:
        """The job whose scene this slot holds loaded, if any (and not idle past reuse)."""
        key = self._key
        if key is None or time.monotonic() - self._idle_since > self.settings.idle_s / 2:
            return None
        return key.job

    def render(self, job: str, scene: Path, span: PartSpan, out_dir: Path, *, device: str = "CPU",
               processes: int = 1, use: int | None = None, scene_root: Path | None = None, cancel: threading.Event | None = None,
               log_path: Path | None = None, limits: Limits = NO_LIMITS, output_format: str | None = None,
               stats: RenderStats | None = None) -> list[Path]:
        """Render `span` of `job`'s `scene` into `out_dir`, as render.render_frames does (same
        arguments, files, checks and errors), in this slot's warm processes: started (and the
        scene loaded) only when the slot holds no process for this job yet. The slot keeps
        `processes` of them (render.warm_policy); the part renders in at most `use` (None: as
        many as it has frames for), and the others wait, loaded, for the job's longer parts."""
        scene, out_dir = Path(scene).resolve(), Path(out_dir).resolve()
        key = _Key(job, scene, choose_device(device, self.info), output_format)
        out_dir.mkdir(parents=True, exist_ok=True)  # the part's log lies beside it
        with self._lock:
            try:
                if key != self._key:
                    self._stop_all()
                    self._key, self._parts, self._baseline = key, 0, None
                    self._prepare_folder(key)
                else:
                    self._drop_unusable()
                # As many processes as the policy keeps: more are started (each loads the scene
                # once), ones past it stopped (they hold memory).
                wanted = max(1, processes)
                new = self._start(key, scene_root.resolve() if scene_root else scene.parent,
                                  wanted - len(self._runs))
                if len(self._runs) > wanted:
                    spare, self._runs = self._runs[wanted:], self._runs[:wanted]
                    _close(spare)
                files = self._render(slices(span, min(len(self._runs), use or len(self._runs))), new,
                                     cancel, log_path, limits, stats)
            except BaseException:
                self._stop_all()  # whatever went wrong, the next part starts from a fresh Blender
                raise
            moved = self._move(files, out_dir)
            self._idle_since = time.monotonic()
            self._parts += 1
            self._retire_if_spent()
            return moved

    def close(self) -> None:
        """Stop the processes, gracefully (the slot's thread may be using them: it waits)."""
        with self._lock:
            self._stop_all()

    def kill_if_idle(self) -> None:
        """Stop idle processes at once, with no grace: the worker is stopping, and they hold
        nothing worth saving. Busy ones are the slot's: it stops them when its part is cancelled."""
        if self._lock.acquire(blocking=False):
            try:
                for run in self._runs:
                    run.signal(signal.SIGKILL)
                self._stop_all()
            finally:
                self._lock.release()

    # -- starting and stopping ----------------------------------------------------------
    def _prepare_folder(self, key: _Key) -> None:
        if not key.scene.is_file():
            raise RenderError(f"scene file not found on this worker: {key.scene}")
        shutil.rmtree(self.folder, ignore_errors=True)
        (self.folder / "out").mkdir(parents=True)
        (self.folder / "tmp").mkdir()

    def _start(self, key: _Key, scene_root: Path, count: int) -> list[_Blender]:
        """Start `count` more processes; the new ones. A new one's first request, if the part
        uses it, is sent at once (_render), before the scene has loaded, so the part renders
        whatever the worker does meanwhile (a worker frozen past its lease finds its frames done,
        as with a cold Blender); as for a cold Blender, loading counts towards the first frame's
        time limit. Threads are set per request, so processes started apart share the cores."""
        if count <= 0:
            return []
        source = f"{inspect.getsource(_blender_setup)}\n{inspect.getsource(_blender_warm)}\n"
        log.info("starting %d warm Blender process(es) for job %s", count, key.job)
        new: list[_Blender] = []
        try:
            for _ in range(count):
                self._serial += 1
                index = self._serial
                marker = f"{MARKER}{secrets.token_hex(12)} "
                params = {"marker": marker, "device": key.device, "has_oidn": self.info.has_oidn,
                          "idle_s": self.settings.idle_s,
                          "expect": str(self.folder / "tmp" / f"checked-{index}.json")}
                script = self.folder / "tmp" / f"warm-{index}.py"
                script.write_text(f"{source}\n_blender_warm({params!r})\n", encoding="utf-8")
                cmd = self.sandbox.command(
                    blender_command(self.info.path, key.scene, self.folder / "out", script, None, key.device,
                                    None, key.output_format),
                    read_only=[scene_root], writable=[self.folder], gpu=key.device != "CPU")
                run = _Blender(cmd, self.folder / "tmp" / f"expected-{index}.json", f"[{index}] ", None,
                               self._log_lock, FrameClock([]), self.sandbox.bwrap is not None, control=marker)
                run.news = self._news
                self._runs.append(run)
                new.append(run)
                self._asked[run] = time.monotonic()
        except OSError as exc:
            raise RenderError(f"cannot start Blender {self.info.path!r}: {exc}") from None
        return new

    def _drop_unusable(self) -> None:
        """Stop, one by one, the processes that exited (crashed between parts, or idle past their
        limit) or that were idle for more than half of `idle_s` (they may be exiting): one that
        died goes alone, the others keep the scene loaded."""
        now = time.monotonic()
        usable = [run for run in self._runs
                  if run.proc.poll() is None and now - self._asked.get(run, 0.0) <= self.settings.idle_s / 2]
        if len(usable) < len(self._runs):
            gone = [run for run in self._runs if run not in usable]
            log.info("replacing %d of the warm Blender processes of job %s: %s", len(gone), self.job or "?",
                     "; ".join(f"exited with code {run.proc.returncode}" if run.proc.returncode is not None
                               else "idle too long" for run in gone))
            _close(gone)
            self._runs = usable
        self._asked = {run: self._asked[run] for run in usable if run in self._asked}

    def _stop_all(self) -> None:
        runs, self._runs, self._key, self._asked = self._runs, [], None, {}
        _close(runs)

    def _retire_if_spent(self) -> None:
        # Per process: a slot that starts a second process for a longer part holds twice the
        # memory without any of them having grown (measured in total, that replaced them all).
        used = max((tree_rss(run.proc.pid) for run in self._runs), default=0)
        if self._baseline is None:
            self._baseline = used
        limit = self.settings.max_memory or 2 * self._baseline
        why = ""
        if self._parts >= self.settings.max_parts:
            why = f"it rendered {self._parts} parts (--warm-parts)"
        elif used > limit:
            why = f"a process holds {format_size(used)} of memory, more than {format_size(limit)}"
        if why:
            log.info("replacing the warm Blender of job %s: %s", self.job, why)
            self._stop_all()

    # -- one part ---------------------------------------------------------------------
    def _render(self, pieces: list[PartSpan], new: list[_Blender], cancel: threading.Event | None,
                log_path: Path | None, limits: Limits, stats: RenderStats | None) -> list[Path]:
        """Send the part's slices to the first processes and wait for them; `new`: the processes
        started for this part (their load is the part's)."""
        out = self.folder / "out"
        for leftover in out.iterdir():  # frames of a part that ended early are not this part's
            leftover.unlink()
        runs = self._runs[:len(pieces)]
        started = min((self._asked[run] for run in new), default=None)
        # As the cold path's -t: with several processes each gets its share of the cores; alone,
        # the scene's own setting.
        threads = max(1, usable_cores() // len(runs)) if len(runs) > 1 else None
        with (log_path.open("a", encoding="utf-8") if log_path else contextlib.nullcontext()) as part_log:
            for run, piece in zip(runs, pieces, strict=True):
                run.expect.unlink(missing_ok=True)
                # A process started for this part keeps its start time (loading counts towards the
                # first frame's limit); a spare that loaded earlier starts its clock now.
                run.clock = _restarted(run.clock, piece) if run in new else FrameClock(piece.frames())
                if run not in new:
                    _drain(run)  # a spare's "ready" is not this part's load
                run.log = part_log
                request = {"frames": piece.frames(), "start": piece.start, "end": piece.end, "step": piece.step,
                           "expect": str(run.expect), "threads": threads}
                _send(run, request)  # if it died, _await finds it exited and says why
            try:
                frames, ready = self._await(runs, cancel, limits)
            finally:
                for run in runs:
                    run.log = None
        self._keep_spares(runs, every=0.0)  # all idle from now on: the spares' clocks restart too
        self._asked.update((run, time.monotonic()) for run in runs)
        files = _verify(runs, out)
        if stats is not None:
            stats.frames += frames
            # The scene's load, paid by this part only when processes started for it.
            stats.load_seconds = max(ready) - started if started is not None and ready else 0.0
        return files

    def _await(self, runs: list[_Blender], cancel: threading.Event | None,
               limits: Limits) -> tuple[list[FrameStat], list[float]]:
        """Until every run answered `done`: the frames they reported on the way, and when those
        that had just started said they were ready. Raises RenderCancelled on `cancel`,
        RenderError when one exits or runs past a limit."""
        waiting = set(range(len(runs)))
        frames: list[FrameStat] = []
        ready: list[float] = []
        while waiting:
            self._news.clear()  # before the answers are read: one that comes later wakes the wait below
            self._keep_spares([runs[index] for index in waiting], every=self.settings.idle_s / 4)
            if cancel is not None and cancel.is_set():
                raise RenderCancelled("warm render cancelled")
            # The spares are held to the memory ceiling too (not to a frame's time: they render none).
            over = _over_limit(runs, limits) or _over_limit([run for run in self._runs if run not in runs],
                                                            dataclasses.replace(limits, max_frame_s=None))
            if over is not None:
                raise _failure_after_stop(over, self._runs)
            for index in list(waiting):
                run = runs[index]
                exited = run.proc.poll() is not None
                if exited:
                    run.finish()  # its last answers may still be in the pipe: read them all first
                while not run.answers.empty():
                    answer = run.answers.get_nowait()
                    if answer.get("done"):
                        waiting.discard(index)
                    elif answer.get("ready"):
                        ready.append(time.monotonic())
                    elif "frame" in answer:
                        frames.append(_frame_stat(run, answer))
                if index in waiting and exited:
                    raise _failure_after_stop(run, self._runs)
            if waiting:
                # An answer or an exit wakes this at once (a part's end waited up to POLL_S for
                # the next look: 0.05 s a part on average, 3 % of 60 quick frames in 13 parts);
                # the limits, the spares' pings and `cancel` are looked at every POLL_S.
                self._news.wait(POLL_S)
        return frames, ready

    def _keep_spares(self, busy: list[_Blender], every: float) -> None:
        """The processes not rendering (spares the part does not use, and those done with their
        slice while others render) wait for the job's next parts: a ping when they were last
        asked more than `every` seconds ago keeps them from exiting as idle meanwhile."""
        now = time.monotonic()
        for run in self._runs:
            if run not in busy and now - self._asked.get(run, 0.0) > every:
                _send(run, {"ping": True})
                self._asked[run] = now

    def _move(self, files: list[Path], out_dir: Path) -> list[Path]:
        moved = []
        for path in files:
            dest = out_dir / path.name
            os.replace(path, dest)
            moved.append(dest)
        return moved


def _restarted(clock: FrameClock, piece: PartSpan) -> FrameClock:
    """The clock of a process that just started, now for its first slice: time still runs
    from its start, so loading the scene counts towards the first frame's limit."""
    fresh = FrameClock(piece.frames())
    fresh.since = fresh.started = clock.started
    return fresh


def _send(run: _Blender, request: dict) -> None:
    """One request to a warm process; a process that died is found by whoever awaits it."""
    try:
        assert run.proc.stdin is not None
        run.proc.stdin.write(json.dumps(request) + "\n")
        run.proc.stdin.flush()
    except OSError:
        pass


def _drain(run: _Blender) -> None:
    """Drop a process's answers not read yet (a spare's "ready", from before this part)."""
    while not run.answers.empty():
        run.answers.get_nowait()


def _close(runs: list[_Blender]) -> None:
    """Stop processes: end of input first (an idle one exits at once), then render._stop."""
    for run in runs:
        with contextlib.suppress(OSError):
            assert run.proc.stdin is not None
            run.proc.stdin.close()
    _stop(runs)


def _frame_stat(run: _Blender, answer: dict) -> FrameStat:
    """A frame's time as Blender measured it (from its start to its file written), and the
    highest memory the worker saw while Blender rendered it (from the frame clock)."""
    frame = int(answer["frame"])
    peak = next((stat.peak_rss_bytes for stat in reversed(run.clock.stats) if stat.frame == frame),
                run.clock.peak)
    return FrameStat(frame, float(answer.get("seconds", 0.0)), peak)


def _failure_after_stop(run: _Blender, runs: list[_Blender]) -> RenderError:
    """The error for `run` (exited, or past a limit), once every process of the slot has
    stopped: its last words are in its tail only after its output has been read to the end."""
    _stop(runs)
    return _failure(run)
