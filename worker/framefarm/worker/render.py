"""The worker's render back end: Blender's command line, run and watched.

A part (an arithmetic progression of frames) is rendered by one or more `blender -b`
processes whose output streams to a log; a cancelled part stops them at once. The seed
marked a part done whenever Blender exited; here it is done only when every expected
frame exists and decodes. Failures carry Blender's own words and say whether a retry
can help, so a scene without a camera fails its job at once instead of using up retries.
"""
from __future__ import annotations

import contextlib
import inspect
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from framefarm.common.frameset import FrameRange, PartSpan
from framefarm.common.procs import die_with_parent
from framefarm.worker.blender_setup import _blender_setup
from framefarm.worker.frames_check import FrameCheckError, check_frame
from framefarm.worker.limits import NO_LIMITS, FrameClock, FrameStat, Limits, over_memory, tree_pids, tree_rss
from framefarm.worker.sandbox import NO_SANDBOX, Sandbox, clean_env
from framefarm.worker.still_piece import setup_source as still_piece_source

# Best first: OptiX is the fastest path on NVIDIA cards, CPU always works.
GPU_PREFERENCE = ("OPTIX", "CUDA", "HIP", "ONEAPI", "METAL")
TAIL_LINES = 60
TERMINATE_GRACE_S = 5.0
PROBE_TIMEOUT_S = 120.0
_PROBE_MARKER = "FRAMEFARM-PROBE "
_OUR_ERROR = "FRAMEFARM-ERROR: "

# Blender's messages for scenes that fail the same way on every try and worker.
_DETERMINISTIC = re.compile(
    r"no camera|Failed to read blend file|File format is not supported|Cannot read file"
    r"|not a blend file|newer Blender",
    re.IGNORECASE,
)
_PYTHON_EXCEPTION = re.compile(r"^\w+(Error|Exception): ")


class RenderError(Exception):
    """Blender could not render the part.

    `deterministic` is True when retrying cannot help (no camera, a corrupt or
    unsupported .blend, a video output format, a scene newer than this Blender),
    so the farm fails the job instead of retrying the part elsewhere.
    """

    def __init__(self, message: str, log_tail: str = "", deterministic: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.log_tail = log_tail
        self.deterministic = deterministic


class RenderCancelled(Exception):
    """The part was cancelled while Blender rendered it; Blender has been stopped."""


@dataclass
class BlenderInfo:
    path: str
    version: int  # major * 100 + minor: 304 for 3.4, as Blender numbers files
    version_string: str  # '3.4.1'
    devices: list[str]  # Cycles device types with at least one device; always has 'CPU'
    has_oidn: bool  # built with OpenImageDenoise; without it denoising must be off


# Runs inside Blender (--python-expr), guarded so that it answers from 3.4 to 5.x.
# The marker is split so that a program echoing its arguments cannot fake it.
_PROBE = """
import json, bpy
info = {"version": list(bpy.app.version), "version_string": bpy.app.version_string,
        "devices": ["CPU"], "has_oidn": False}
try:
    import _cycles
    info["has_oidn"] = bool(getattr(_cycles, "with_openimagedenoise", False))
except ImportError:
    pass
info["has_oidn"] = info["has_oidn"] or bool(getattr(bpy.app.build_options, "openimagedenoise", False))
addon = bpy.context.preferences.addons.get("cycles")
prefs = addon.preferences if addon else None
for kind in {kinds!r}:
    try:
        if hasattr(prefs, "get_devices_for_type"):
            found = prefs.get_devices_for_type(kind)
        else:
            prefs.refresh_devices()
            found = prefs.devices
    except Exception:  # no Cycles, or a device type this build does not know
        found = []
    # GPU lists include the CPU entries too, so count only devices of this type.
    if any(device.type == kind for device in found):
        info["devices"].append(kind)
print("FRAMEFARM" + "-PROBE " + json.dumps(info), flush=True)
""".replace("{kinds!r}", repr(GPU_PREFERENCE))


def probe_blender(path: str = "blender", sandbox: Sandbox = NO_SANDBOX) -> BlenderInfo:
    """Start Blender once (in `sandbox`, as every render will) to learn its version, Cycles
    devices and denoiser, which the worker reports when it registers and uses for every render."""
    cmd = sandbox.command([path, "-b", "--factory-startup", "--python-exit-code", "1", "--python-expr", _PROBE],
                          gpu=True)
    try:
        # Dies with the worker, as every render does: a worker killed while it probes (a service
        # manager's SIGKILL, its machine's OOM killer) must not leave a Blender behind, and
        # unsandboxed no bwrap --die-with-parent stands between them.
        done = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, env=clean_env(),
                              errors="replace", timeout=PROBE_TIMEOUT_S, preexec_fn=die_with_parent(signal.SIGKILL))
    except FileNotFoundError:
        raise RenderError(f"Blender not found: {path!r} does not exist or is not on PATH") from None
    except PermissionError:
        raise RenderError(f"Blender at {path!r} is not executable") from None
    except subprocess.TimeoutExpired:
        raise RenderError(f"{path!r} did not finish starting within {PROBE_TIMEOUT_S:.0f} s") from None
    output = done.stdout + done.stderr
    for line in output.splitlines():
        if line.startswith(_PROBE_MARKER):
            data = json.loads(line[len(_PROBE_MARKER):])
            major, minor = data["version"][:2]
            return BlenderInfo(path=os.path.abspath(shutil.which(path) or path), version=major * 100 + minor,
                               version_string=data["version_string"], devices=data["devices"],
                               has_oidn=data["has_oidn"])
    tail = "\n".join(output.splitlines()[-TAIL_LINES:])
    raise RenderError(f"{path!r} does not look like Blender: it exited with code {done.returncode} "
                      "without printing the probe result", log_tail=tail)


def choose_device(requested: str, info: BlenderInfo) -> str:
    """'auto' takes the fastest device type this Blender found; an explicit type
    this machine lacks is an error rather than a silent fall back to the CPU."""
    wanted = requested.strip().upper()
    if wanted == "AUTO":
        return next((kind for kind in GPU_PREFERENCE if kind in info.devices), "CPU")
    if wanted not in info.devices:
        raise RenderError(f"Cycles device {wanted} is not available here; Blender "
                          f"{info.version_string} found: {', '.join(info.devices)}")
    return wanted


# cgroup v2's CPU limit of this process's group, as a container sees it: "max 100000" or
# "QUOTA PERIOD" in microseconds (a container's --cpus 2, a Kubernetes limit of 2: "200000 100000").
CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def usable_cores(cpu_max: Path = CGROUP_CPU_MAX) -> int:
    """The cores this worker may use: those it may run on (taskset, a cpuset), and no more
    than its cgroup's CPU quota, rounded up. `os.cpu_count()` counts the host's cores, which in
    a container limited to 2 of 64 would give each part 32 processes' worth of threads."""
    cores = len(os.sched_getaffinity(0))
    try:
        quota, period = cpu_max.read_text().split()[:2]
        if quota != "max":
            cores = min(cores, -(-int(quota) // int(period)))
    except (OSError, ValueError, ZeroDivisionError):
        pass  # no cgroup v2 limit readable here: the affinity alone
    return max(1, cores)


def slot_policy(device: str, cores: int) -> int:
    """How many parts a worker renders at once when `--slots` is left to `auto`.

    On a CPU with two cores or more, two: a part's Blender leaves cores idle while it starts,
    loads the scene, saves a frame and ends, and a second part fills those gaps (bench/overhead.py:
    a scene slow to load, in preview order, went from 0.96-1.05 of one plain `blender -a` with one
    slot to 0.78-0.84 with two; quick frames unchanged; docs/benchmarks.md, sixth pass). Each
    slot's Blender still runs on all the cores. On a GPU, one: two scenes would share one card's
    memory and the card is busy from start to end anyway.
    """
    return 2 if device == "CPU" and cores >= 2 else 1


# A Blender process more on a part pays one more start-up and scene load (about a second
# here, far more for a heavy scene) and its memory; it pays back only when each process has
# at least this many seconds of rendering to overlap (bench/processes.py: 24 frames of 0.1 s,
# 2.4 s of work, lost 19 % with two processes; 34 frames of 0.5 s, 17 s, gained 16 %).
MIN_WORK_PER_PROCESS_S = 8.0


def process_policy(frame_count: int, cores: int, seconds_per_frame: float | None = None) -> int:
    """How many Blender processes share one part.

    Each Blender spends about a second starting and loading the scene, and small
    frames leave cores idle during that time and between frames; a few processes
    working on contiguous slices overlap those gaps. Where the farm has measured the
    job's time per frame (the claim's `seconds_per_frame`), the part gets one process
    per MIN_WORK_PER_PROCESS_S of rendering, up to 4: quick frames stay in one process
    however many there are. Until then it goes by frame count: 1 below 8 frames, 2
    below 32, else 4. Never more than the cores available.

    A warm slot (warm.py), whose processes load the scene once per job, weighs the job's work
    left instead (warm_policy).
    """
    if seconds_per_frame is not None and seconds_per_frame > 0:
        wanted = min(4, frame_count, max(1, int(frame_count * seconds_per_frame // MIN_WORK_PER_PROCESS_S)))
    else:
        wanted = 1 if frame_count < 8 else 2 if frame_count < 32 else 4
    return max(1, min(wanted, cores))


# A warm process already loaded costs a part no start-up, but each process of a part still pays a
# request's set-up and waits for the slowest slice at the part's end: it pays back with at least
# this many seconds of the part's frames (60 quick frames of 0.33 s in parts of 6 to 14 frames, as
# bench/overhead.py's quick scenario, single runs: 1.31x plain Blender's time with two processes a
# part, 1.17x and 1.18x with one).
MIN_WARM_PART_WORK_S = 4.0


def warm_policy(frame_count: int, frames_left: int | None, cores: int,
                seconds_per_frame: float | None = None) -> tuple[int, int]:
    """How many Blender processes a warm slot (warm.py) keeps loaded for a part of a job, and
    how many of them the part renders in.

    A warm process pays its start-up and scene load once per job, not once per part, so what
    must repay starting it is the job's work left (the claim's `frames_left` at
    `seconds_per_frame`), by process_policy's measure, not the part's: that many are kept. A part
    renders in as many of them as get at least MIN_WARM_PART_WORK_S of its frames each; the
    others wait, loaded, for the job's longer parts. So a scene that takes a second to sync,
    whose runs of nine frames each got one process by the part's own measure, renders them in
    two, loaded once for the job; and a one-frame part (the job's first, which the farm times,
    and the preview frames after it) renders in one while a spare loads the scene on a core the
    single frame leaves partly idle (docs/benchmarks.md: 40 frames of that scene, 0.92 of plain
    Blender's time with the spare loading during the first part and the previews, 0.97 with it
    started at the first longer part). Before the farm has measured the job's time per frame a
    part renders in as many as a cold part would, and at most one spare loads beside it (the
    scene's size is unknown too).
    """
    for_job = process_policy(max(frame_count, frames_left or 0), cores, seconds_per_frame)
    if seconds_per_frame is None or seconds_per_frame <= 0:
        use = process_policy(frame_count, cores)
        return max(use, min(for_job, 2)), use
    if frame_count == 1:
        return for_job, 1
    return for_job, max(1, min(for_job, int(frame_count * seconds_per_frame // MIN_WARM_PART_WORK_S)))


@dataclass
class RenderStats:
    """What a render measured, for the part's `_meta/stats.json`: each frame's time and
    peak memory, and the seconds spent loading the scene (0 when a warm Blender had it)."""

    frames: list[FrameStat] = field(default_factory=list)
    load_seconds: float = 0.0

    def as_json(self) -> dict:
        return {"frames": [stat.as_json() for stat in sorted(self.frames, key=lambda stat: stat.frame)],
                "load_seconds": round(self.load_seconds, 4)}


class _Blender:
    """One running Blender process: its output goes to the shared log and a tail.

    With a `control` marker (a warm Blender, warm.py) its stdin is a pipe the worker writes
    requests to, and its output lines that start with the marker are its answers: they go
    to `answers`, not to the log; `news`, if set, is set after each answer and when the output
    ends (the process exited), so whoever waits for answers wakes at once."""

    def __init__(self, cmd: list[str], expect: Path, label: str, log: IO[str] | None,
                 log_lock: threading.Lock, clock: FrameClock, sandboxed: bool, control: str | None = None) -> None:
        self.expect, self.clock, self.sandboxed, self.control = expect, clock, sandboxed, control
        self.log = log
        self.stopped_for = ""  # why the worker stopped it: a limit it ran past
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self.answers: queue.Queue[dict] = queue.Queue()
        self.news: threading.Event | None = None
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE if control else subprocess.DEVNULL,
                                     stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, errors="replace", env=clean_env(),
                                     start_new_session=True,  # its own group, killed as one
                                     preexec_fn=die_with_parent(signal.SIGKILL))
        self._reader = threading.Thread(target=self._read, args=(label, log_lock),
                                        name=f"blender-log{label.strip()}", daemon=True)
        self._reader.start()

    def _read(self, label: str, lock: threading.Lock) -> None:
        try:
            self._read_lines(label, lock)
        finally:
            if self.news is not None:
                self.news.set()

    def _read_lines(self, label: str, lock: threading.Lock) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            line = line.rstrip("\r\n")
            if self.control and line.startswith(self.control):
                with contextlib.suppress(ValueError):
                    self.answers.put(json.loads(line[len(self.control):]))
                if self.news is not None:
                    self.news.set()
                continue
            self.tail.append(line)
            self.clock.line(line)
            log = self.log  # a warm Blender's log changes with each part
            if log is not None:
                try:
                    with lock:
                        log.write(f"{label}{line}\n")
                        log.flush()
                except OSError:  # a full disk: keep reading, or Blender would block on a full pipe
                    self.log = None

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            # The sandbox's own processes run in a session of their own (bwrap --new-session), out
            # of the group's reach; bwrap's --die-with-parent does not always take them along
            # (containers/bubblewrap#633), and one left behind sleeps forever: each by pid too.
            family = tree_pids(self.proc.pid)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            for pid in family[1:]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)

    def finish(self) -> None:
        self._reader.join(timeout=10)


def render_frames(info: BlenderInfo, scene: Path, frames: PartSpan | FrameRange, out_dir: Path, *,
                  device: str = "CPU", processes: int = 1, threads: int | None = None,
                  cancel: threading.Event | None = None, log_path: Path | None = None,
                  sandbox: Sandbox = NO_SANDBOX, scene_root: Path | None = None,
                  limits: Limits = NO_LIMITS, output_format: str | None = None,
                  stats: RenderStats | None = None, still_piece: Mapping[str, object] | None = None) -> list[Path]:
    """Render `frames` (a part's span, or a whole range) of `scene` into `out_dir`
    as 0001.png-style files and return the checked frame files in frame order.

    `output_format` (Blender's -F name) renders in that format instead of the scene's.
    In `sandbox`, Blender sees `scene_root` (the scene's folder; the .blend's own folder
    when None) read-only and writes only to `out_dir`. Raises RenderError (Blender failed,
    ran past `limits`, or a frame is missing or broken) or RenderCancelled (`cancel` was
    set; Blender is stopped before this returns). `stats`, when given, receives each
    frame's time and peak memory and the time the scene took to load. `still_piece`
    ({"index", "of", "frame"}) renders that band of a split still (still_piece.py).
    """
    span = as_span(frames)
    device = choose_device(device, info)
    scene, out_dir = Path(scene).resolve(), Path(out_dir).resolve()
    if "#" in str(out_dir):
        raise ValueError(f"output folder {out_dir} contains '#', which Blender reads as a frame number")
    if not scene.is_file():
        raise RenderError(f"scene file not found on this worker: {scene}")
    out_dir.mkdir(parents=True, exist_ok=True)
    pieces = slices(span, processes)
    per_process = None
    if threads is not None or len(pieces) > 1:
        per_process = max(1, (threads or usable_cores()) // len(pieces))
    with tempfile.TemporaryDirectory(prefix="framefarm-render-") as tmp, \
            (log_path.open("a", encoding="utf-8") if log_path else contextlib.nullcontext()) as log:
        folders = _Folders(scene_root.resolve() if scene_root else scene.parent, out_dir, Path(tmp))
        runs = _start(info, scene, pieces, folders, device, per_process, log, sandbox, output_format, still_piece)
        outcome = _wait(runs, cancel, limits)
        if outcome == "cancelled":
            raise RenderCancelled(f"render of frames {span.start}-{span.end} cancelled")
        if isinstance(outcome, _Blender):
            raise _failure(outcome)
        files = _verify(runs, out_dir)
        if stats is not None:
            stats.frames += [stat for run in runs for stat in run.clock.stats]
            stats.load_seconds = max(run.clock.load_seconds for run in runs)  # they load side by side
        return files


def as_span(frames: PartSpan | FrameRange) -> PartSpan:
    """The frames to render as one span: a part's own, or a whole range as span 0.
    Anything else (a bare list of frames) is refused rather than guessed at."""
    if isinstance(frames, PartSpan):
        return frames
    if isinstance(frames, FrameRange):
        return PartSpan(0, frames.start, frames.count, frames.step)
    raise TypeError(f"frames must be a PartSpan or a FrameRange, not {type(frames).__name__}")


def slices(span: PartSpan, processes: int) -> list[PartSpan]:
    """Contiguous slices of the span, of near-equal length, one per Blender process."""
    count = max(1, min(processes, span.count))
    size, extra = divmod(span.count, count)
    pieces, first = [], 0
    for index in range(count):
        length = size + (1 if index < extra else 0)
        pieces.append(PartSpan(index, span.start + first * span.step, length, span.step))
        first += length
    return pieces


@dataclass(frozen=True)
class _Folders:
    """What a render's Blender may see: the scene (read-only), its output and its scratch folder."""

    scene: Path
    out: Path
    tmp: Path


def _start(info: BlenderInfo, scene: Path, pieces: list[PartSpan], folders: _Folders, device: str,
           threads: int | None, log: IO[str] | None, sandbox: Sandbox,
           output_format: str | None = None, still_piece: Mapping[str, object] | None = None) -> list[_Blender]:
    lock, runs = threading.Lock(), []
    setup_source = inspect.getsource(_blender_setup) + (still_piece_source() if still_piece else "")
    tmp = folders.tmp
    try:
        for index, piece in enumerate(pieces):
            expect = tmp / f"expected-{index}.json"
            params = {"frames": piece.frames(), "expect": str(expect), "device": device, "has_oidn": info.has_oidn,
                      "piece": still_piece}
            setup = tmp / f"setup-{index}.py"
            setup.write_text(f"{setup_source}\n_blender_setup({params!r})\n", encoding="utf-8")
            cmd = sandbox.command(blender_command(info.path, scene, folders.out, setup, piece, device, threads,
                                                  output_format),
                                  read_only=[folders.scene], writable=[folders.out, tmp], gpu=device != "CPU")
            label = f"[{index}] " if len(pieces) > 1 else ""
            if log is not None:
                with lock:
                    log.write(f"{label}$ {subprocess.list2cmdline(cmd)}\n")
            runs.append(_Blender(cmd, expect, label, log, lock, FrameClock(piece.frames()),
                                 sandbox.bwrap is not None))
    except BaseException as exc:
        _stop(runs)
        if isinstance(exc, OSError):
            raise RenderError(f"cannot start Blender {info.path!r}: {exc}") from None
        raise
    return runs


def blender_command(blender: str, scene: Path, out_dir: Path, setup: Path, frames: PartSpan | None,
                    device: str, threads: int | None, output_format: str | None = None) -> list[str]:
    """The command line; Blender applies its options in order, so the output path and
    format come before the setup script (which reads them back) and everything before -a.
    `output_format` (a name of Blender's -F, checked by the gateway) overrides the scene's.
    Without `frames` Blender renders nothing itself: the script does (a warm Blender)."""
    animation = ["-s", str(frames.start), "-e", str(frames.end), "-j", str(frames.step), "-a"] if frames else []
    return [blender, "-b", "--factory-startup", "--disable-autoexec", str(scene),
            "-o", f"{out_dir}/####", *(["-F", output_format] if output_format else []), "-x", "1",
            *(["-t", str(threads)] if threads else []),
            "--python-exit-code", "2", "--python", str(setup), *animation,
            "--", "--cycles-device", device]


def _wait(runs: list[_Blender], cancel: threading.Event | None, limits: Limits) -> str | _Blender:
    """Watch the processes: 'ok', 'cancelled', or the first one that failed or ran past
    a limit (the others are stopped then: the part fails anyway)."""
    outcome: str | _Blender = "ok"
    try:
        while True:
            if cancel is not None and cancel.is_set():
                outcome = "cancelled"
                break
            over = _over_limit(runs, limits)
            if over is not None:
                outcome = over
                break
            codes = [run.proc.poll() for run in runs]
            failed = next((run for run, code in zip(runs, codes, strict=True) if code not in (None, 0)), None)
            if failed is not None:
                outcome = failed
                break
            if all(code == 0 for code in codes):
                break
            if cancel is not None:
                cancel.wait(0.1)
            else:
                time.sleep(0.1)
    finally:
        _stop(runs)
    return outcome


def _over_limit(runs: list[_Blender], limits: Limits) -> _Blender | None:
    """The first Blender still running past a limit, marked with the reason to stop it."""
    for run in runs:
        if run.proc.poll() is None:
            used = tree_rss(run.proc.pid)
            run.clock.memory(used)
            why = run.clock.overdue(limits.max_frame_s) or over_memory(run.proc.pid, limits.max_memory, used)
            if why:
                run.stopped_for = why
                return run
    return None


def _stop(runs: list[_Blender]) -> None:
    """SIGTERM, then SIGKILL for any Blender still alive after the grace period."""
    for run in runs:
        run.signal(signal.SIGTERM)
    deadline = time.monotonic() + TERMINATE_GRACE_S
    for run in runs:
        try:
            run.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            run.signal(signal.SIGKILL)
            run.proc.wait()
    for run in runs:
        run.finish()


def _failure(run: _Blender) -> RenderError:
    """Blender's own words for what went wrong, and whether a retry could help."""
    code = run.proc.returncode
    tail = "\n".join(run.tail)
    if run.stopped_for:
        return RenderError(run.stopped_for, tail, deterministic=False)
    text, ours = _blender_message(list(run.tail))
    if run.sandboxed and code > 128:  # bwrap exits 128 + N when Blender died of signal N
        code = 128 - code
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.valid_signals() else f"signal {-code}"
        if -code == signal.SIGKILL:  # nothing in Blender sends it; the kernel's OOM killer does
            message = "Blender was killed (SIGKILL), probably because the machine ran out of memory"
        else:
            message = f"Blender crashed with {name}"
        message += f": {text}" if text else ""
        return RenderError(message, tail, deterministic=False)
    if not text:
        return RenderError(f"Blender exited with code {code} and printed no error message", tail)
    return RenderError(text, tail, deterministic=ours or bool(_DETERMINISTIC.search(text)))


def _blender_message(lines: list[str]) -> tuple[str, bool]:
    """(message, whether it is Framefarm's own refusal) from Blender's output."""
    ours = [line[len(_OUR_ERROR):].strip() for line in lines if line.startswith(_OUR_ERROR)]
    if ours:
        return ours[-1], True
    errors: list[str] = []
    for line in lines:
        text = line[len("Error:"):].strip() if line.startswith("Error:") else ""
        if not text and _PYTHON_EXCEPTION.match(line):
            text = line.strip()
        if text and not text.startswith(("Python: Traceback", "script failed")) and text not in errors:
            errors.append(text)
    if errors:
        return "; ".join(errors[-3:]), False
    hints = [line.strip() for line in lines
             if not line.startswith("Fra:") and re.search(r"(?i)\b(cannot|failed|error)\b", line)]
    return (hints[-1] if hints else ""), False


def _verify(runs: list[_Blender], out_dir: Path) -> list[Path]:
    """Every expected frame, in frame order, checked to exist, to lie in `out_dir` and to decode."""
    frames: list[Path] = []
    problems: list[str] = []
    for run in runs:
        try:
            expected = json.loads(run.expect.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RenderError("Blender exited without running Framefarm's setup script",
                              "\n".join(run.tail)) from None
        for _frame, paths in expected["files"]:
            for path in map(Path, paths):
                # The notes lie in a folder Blender can write, so they are no more trusted than
                # the scene: a frame outside the output folder would put a file of the worker's
                # (any image of the right size) into the result the client downloads.
                if path.resolve().parent != out_dir:
                    problems.append(f"{path} is not in the part's output folder")
                    continue
                try:
                    check_frame(path, expected["width"], expected["height"])
                except FrameCheckError as exc:
                    problems.append(exc.message)
                frames.append(path)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise RenderError(f"Blender exited normally but a frame is bad: {problems[0]}{more}",
                          "\n".join(runs[-1].tail))
    return frames
