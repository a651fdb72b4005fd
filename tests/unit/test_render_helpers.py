"""The worker's render back end without Blender: choosing a device and a process count,
slicing a part's span among processes, refusing bad arguments, and the failures of a
Blender that crashes or lies, played by small stand-in programs."""
from __future__ import annotations

import json
import os
import stat
import sys
import threading
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from framefarm.common.frameset import FrameRange, FrameSpecError, PartSpan
from framefarm.worker.limits import FrameClock
from framefarm.worker.render import (BlenderInfo, RenderError, as_span, choose_device, probe_blender,
                                     process_policy, render_frames, slices, slot_policy, usable_cores,
                                     warm_policy, _Blender)


def test_probe_missing_binary() -> None:
    with pytest.raises(RenderError, match="Blender not found"):
        probe_blender("/nonexistent/blender")


@pytest.mark.parametrize("impostor", ["/bin/echo", "/bin/true", "/bin/false"])
def test_probe_rejects_a_program_that_is_not_blender(impostor: str) -> None:
    with pytest.raises(RenderError, match="does not look like Blender"):
        probe_blender(impostor)


def fake_info(*devices: str, path: str = "blender") -> BlenderInfo:
    return BlenderInfo(path=path, version=304, version_string="3.4.1", devices=["CPU", *devices],
                       has_oidn=False)


@pytest.mark.parametrize("devices, expected", [((), "CPU"), (("CUDA",), "CUDA"), (("CUDA", "OPTIX"), "OPTIX"),
                                               (("HIP", "ONEAPI"), "HIP"), (("METAL",), "METAL")])
def test_auto_picks_the_best_device(devices: tuple[str, ...], expected: str) -> None:
    assert choose_device("auto", fake_info(*devices)) == expected


def test_explicit_device_must_exist() -> None:
    assert choose_device("cuda", fake_info("CUDA")) == "CUDA"
    assert choose_device("CPU", fake_info()) == "CPU"
    with pytest.raises(RenderError, match="Cycles device OPTIX is not available here.*CPU, CUDA"):
        choose_device("OPTIX", fake_info("CUDA"))


@pytest.mark.parametrize("device, cores, expected", [("CPU", 2, 2), ("CPU", 16, 2), ("CPU", 1, 1), ("CUDA", 16, 1),
                                                     ("OPTIX", 2, 1), ("METAL", 8, 1)])
def test_slot_policy(device: str, cores: int, expected: int) -> None:
    """`--slots auto`: two parts at once on a CPU that has two cores to overlap them, one on a GPU."""
    assert slot_policy(device, cores) == expected


@pytest.mark.parametrize("cpu_max, limit", [("max 100000\n", None), ("100000 100000\n", 1), ("150000 100000\n", 2),
                                            ("50000 100000\n", 1), ("400000 100000\n", 4), ("garbage\n", None),
                                            ("0 0\n", None), (None, None)])
def test_usable_cores_heed_the_cgroups_quota(tmp_path, cpu_max: str | None, limit: int | None) -> None:
    """A container's CPU limit (cgroup v2 cpu.max), rounded up, below the cores the process may
    run on; an unlimited, unreadable or missing limit leaves the affinity alone."""
    path = tmp_path / "cpu.max"
    if cpu_max is not None:
        path.write_text(cpu_max)
    mine = len(os.sched_getaffinity(0))
    assert usable_cores(path) == (mine if limit is None else min(mine, limit))


@pytest.mark.parametrize("frames, cores, expected", [(1, 16, 1), (7, 16, 1), (8, 16, 2), (31, 16, 2),
                                                     (32, 16, 4), (250, 16, 4), (250, 2, 2), (250, 1, 1),
                                                     (250, 0, 1)])
def test_process_policy(frames: int, cores: int, expected: int) -> None:
    assert process_policy(frames, cores) == expected
    assert process_policy(frames, cores, None) == expected  # nothing measured yet: by frame count


@pytest.mark.parametrize("frames, seconds, cores, expected", [
    (60, 0.15, 16, 1),  # 9 s of quick frames: one process, whatever the frame count
    (250, 0.1, 16, 3), (24, 0.5, 16, 1), (34, 0.5, 16, 2), (100, 60.0, 16, 4), (100, 60.0, 2, 2),
    (1, 600.0, 16, 1)])
def test_process_policy_weighs_the_measured_time_per_frame(frames: int, seconds: float, cores: int,
                                                            expected: int) -> None:
    assert process_policy(frames, cores, seconds) == expected


@pytest.mark.parametrize("frames, left, seconds, cores, kept, used", [
    (9, 35, 1.0, 2, 2, 2),  # a nine-frame part of a job with 35 s left: two warm processes, loaded once
    (9, 9, 1.0, 2, 1, 1),  # the job's last nine seconds: a second load is not repaid
    (1, 40, None, 2, 2, 1),  # a job's first frame, timed in one process while a spare loads
    (1, 400, None, 16, 2, 1),  # before anything is measured, one spare at most
    (1, 5, None, 16, 1, 1),  # a job of five frames never repays a second load
    (1, 400, 1.0, 2, 2, 1),  # a preview frame: the spare stays loaded for the runs after it
    (40, 40, None, 2, 2, 2),  # nothing measured yet: the part renders as a cold one would
    (14, 50, 0.33, 2, 2, 1),  # quick frames: 4.6 s of a part is not worth splitting; the spare waits
    (2, 400, 1.5, 2, 2, 1),  # a short part keeps the spare for the longer ones
    (59, 59, 0.15, 16, 1, 1),
    (250, 250, 0.5, 16, 4, 4),  # 125 s of frames: never more than four processes
    (9, None, 1.0, 2, 1, 1),  # an older gateway says nothing of the job: the part alone decides
    (3, 400, 60.0, 2, 2, 2)])  # never more than the cores
def test_a_warm_slot_weighs_its_processes_by_the_jobs_work_left(frames: int, left: int | None,
                                                                  seconds: float | None, cores: int,
                                                                  kept: int, used: int) -> None:
    assert warm_policy(frames, left, cores, seconds) == (kept, used)
    assert process_policy(frames, cores, seconds) <= kept  # a cold part: by the part alone


# -- a part's span, and its slices among Blender processes --------------------------------------

def test_a_range_renders_as_one_span_and_a_list_is_refused() -> None:
    assert as_span(FrameRange(250, 258, 2)) == PartSpan(0, 250, 5, 2)
    span = PartSpan(3, 10, 4, 5)
    assert as_span(span) is span
    with pytest.raises(TypeError, match="PartSpan or a FrameRange, not list"):
        as_span([1, 2, 3])  # type: ignore[arg-type]


@given(start=st.integers(0, 1000), count=st.integers(1, 300), step=st.integers(1, 7),
       processes=st.integers(-1, 9))
def test_slices_cover_the_span_in_order_nearly_evenly(start: int, count: int, step: int, processes: int) -> None:
    span = PartSpan(0, start, count, step)
    pieces = slices(span, processes)
    assert len(pieces) == max(1, min(processes, count))
    assert [frame for piece in pieces for frame in piece.frames()] == span.frames()
    assert all(piece.step == step for piece in pieces)
    assert max(p.count for p in pieces) - min(p.count for p in pieces) <= 1


def test_bad_arguments(tmp_path: Path) -> None:
    info = fake_info()
    scene = tmp_path / "scene.blend"
    scene.write_bytes(b"BLENDER")
    for frames in ([1, 2], [], (1, 2)):
        with pytest.raises(TypeError):
            render_frames(info, scene, frames, tmp_path)  # type: ignore[arg-type]
    for start, count, step in ((1, 0, 1), (1, 2, 0), (-1, 2, 1)):
        with pytest.raises(FrameSpecError):
            render_frames(info, scene, PartSpan(0, start, count, step), tmp_path)
    with pytest.raises(ValueError, match="'#'"):
        render_frames(info, scene, FrameRange(1, 1), tmp_path / "take#1")
    with pytest.raises(RenderError, match="OPTIX is not available"):
        render_frames(info, scene, FrameRange(1, 1), tmp_path, device="OPTIX")


def test_missing_scene_is_not_the_scenes_fault(tmp_path: Path) -> None:
    with pytest.raises(RenderError, match="scene file not found") as caught:
        render_frames(fake_info(), tmp_path / "gone.blend", FrameRange(1, 1), tmp_path / "out")
    assert not caught.value.deterministic


# -- Blender misbehaving, played by small stand-in programs ------------------------------------

def stand_in(tmp_path: Path, body: str) -> BlenderInfo:
    script = tmp_path / "blender"
    script.write_text(body)
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return fake_info(path=str(script))


def test_crash_is_reported_and_retryable(tmp_path: Path) -> None:
    info = stand_in(tmp_path, "#!/bin/sh\necho 'Writing: /tmp/scene.crash.txt'\nkill -SEGV $$\n")
    (tmp_path / "scene.blend").write_bytes(b"BLENDER")
    with pytest.raises(RenderError, match="Blender crashed with SIGSEGV") as caught:
        render_frames(info, tmp_path / "scene.blend", FrameRange(1, 1), tmp_path / "out")
    assert not caught.value.deterministic
    assert "crash.txt" in caught.value.log_tail


# Plays a Blender that renders what its command line asks for (-s, -e, -j) and writes the
# setup script's expectations for the frames it was handed; with `bad` set, frame 2 is broken.
STAND_IN_BLENDER = """#!{python}
import ast, json, sys
from PIL import Image
args = sys.argv
params = ast.literal_eval(open(args[args.index("--python") + 1]).read().rsplit("_blender_setup(", 1)[1][:-2])
out = args[args.index("-o") + 1].replace("####", "{{:04d}}")
first, last, step = (int(args[args.index(flag) + 1]) for flag in ("-s", "-e", "-j"))
files = [[f, [out.format(f) + ".png"]] for f in params["frames"]]
json.dump({{"files": files, "width": 48, "height": 48, "extension": ".png"}}, open(params["expect"], "w"))
for f in range(first, last + 1, step):
    if {bad} and f == 2:
        open(out.format(f) + ".png", "wb").write(b"\\x89PNG\\r\\n")
    else:
        Image.new("RGB", (48, 48)).save(out.format(f) + ".png")
"""


def test_exit_zero_with_a_bad_frame_fails(tmp_path: Path) -> None:
    info = stand_in(tmp_path, STAND_IN_BLENDER.format(python=sys.executable, bad=True))
    (tmp_path / "scene.blend").write_bytes(b"BLENDER")
    with pytest.raises(RenderError, match="exited normally but a frame is bad: 0002.png") as caught:
        render_frames(info, tmp_path / "scene.blend", FrameRange(1, 2), tmp_path / "out")
    assert not caught.value.deterministic


def test_each_process_is_asked_for_its_slice_of_a_stepped_part(tmp_path: Path) -> None:
    """The command lines and the setup scripts agree on each slice, and the slices
    together are the part: a wrong start, end or step in either fails the frame check."""
    info = stand_in(tmp_path, STAND_IN_BLENDER.format(python=sys.executable, bad=False))
    (tmp_path / "scene.blend").write_bytes(b"BLENDER")
    log = tmp_path / "render.log"
    span = PartSpan(4, 103, 7, 5)  # frames 103, 108, ..., 133
    files = render_frames(info, tmp_path / "scene.blend", span, tmp_path / "out", processes=3, log_path=log)
    assert [path.name for path in files] == [f"{f:04d}.png" for f in span.frames()]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"{f:04d}.png" for f in span.frames()]
    text = log.read_text()
    for label, args in (("[0] $ ", "-s 103 -e 113 -j 5"), ("[1] $ ", "-s 118 -e 123 -j 5"),
                        ("[2] $ ", "-s 128 -e 133 -j 5")):
        line = next(line for line in text.splitlines() if line.startswith(label))
        assert args in line, line
    json.dumps(span.to_json())  # the value a claim answer carries


def test_a_frame_outside_the_output_folder_is_refused(tmp_path: Path) -> None:
    """Blender's notes on the frames it saved lie in a folder it can write (the render's scratch
    folder, writable in the sandbox too), so a scene that rewrote them could name any image of
    the worker's of the right size as a frame, and the worker would send it to the client."""
    secret = tmp_path / "worker-home" / "0001.png"
    secret.parent.mkdir()
    Image.new("RGB", (48, 48), "red").save(secret)
    hostile = STAND_IN_BLENDER.format(python=sys.executable, bad=False).replace(
        "files = [[f, [out.format(f) + \".png\"]] for f in params[\"frames\"]]",
        f"files = [[f, [{str(secret)!r}]] for f in params[\"frames\"]]")
    assert hostile != STAND_IN_BLENDER.format(python=sys.executable, bad=False)
    info = stand_in(tmp_path, hostile)
    (tmp_path / "scene.blend").write_bytes(b"BLENDER")
    with pytest.raises(RenderError, match="0001.png is not in the part's output folder"):
        render_frames(info, tmp_path / "scene.blend", FrameRange(1, 1), tmp_path / "out")


# -- a warm Blender's answers wake whoever waits for them ----------------------------------------

def test_an_answer_and_the_end_of_output_each_set_the_processes_news(tmp_path: Path) -> None:
    """warm.py's _await sleeps on `news` between looks: an answer must set it at once (the
    process then stays alive, so only the answer can have set it), and so must the output's end."""
    marker = "MARK-abc "
    script = f'import sys; sys.stdin.readline(); print({marker + json.dumps({"done": True})!r}, flush=True); sys.stdin.read()'
    run = _Blender([sys.executable, "-c", script], tmp_path / "expect.json", "[1] ", None, threading.Lock(),
                   FrameClock([]), False, control=marker)
    news = threading.Event()
    run.news = news  # as WarmSlot._start sets it, just after the start
    try:
        assert run.proc.stdin is not None
        run.proc.stdin.write("go\n")  # the answer comes only now, after `news` is in place
        run.proc.stdin.flush()
        assert news.wait(30), "an answer did not set news"
        assert run.answers.get(timeout=5) == {"done": True}
        news.clear()
        run.proc.stdin.close()  # end of input: the process exits, its output ends
        assert news.wait(30), "the end of the output did not set news"
    finally:
        run.proc.kill()
        run.proc.wait()
