"""Blender kept warm (worker/warm.py) against the real Blender: the same pixels as a cold
render, the scene loaded once per job, and a process replaced whenever it must be (another
job, a crash, a cancel, a frame past its limit, too many parts)."""
from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from farmtools import require_blender, wait_for
from framefarm.common.frameset import PartSpan
from framefarm.worker.bpy_backend import write_launcher
from framefarm.worker.limits import Limits
from framefarm.worker.render import BlenderInfo, RenderCancelled, RenderError, RenderStats, probe_blender, render_frames
from framefarm.worker.sandbox import choose
from framefarm.worker.warm import WarmSettings, WarmSlot


@pytest.fixture(scope="module")
def sandbox():
    return choose("auto")  # bubblewrap where it runs (CI): the warm folder bound at start must do


@pytest.fixture(scope="module")
def info(sandbox) -> BlenderInfo:
    return probe_blender(require_blender(), sandbox)


def pixels(path: Path) -> bytes:
    with Image.open(path) as image:
        return image.tobytes()


def pids(slot: WarmSlot) -> list[int]:
    return [run.proc.pid for run in slot._runs]


def same_pixels(cold: list[Path], warm: list[Path]) -> None:
    assert [p.name for p in cold] == [p.name for p in warm]
    for a, b in zip(cold, warm, strict=True):
        assert pixels(a) == pixels(b), f"{b.name}: warm pixels differ from cold"


@pytest.mark.parametrize("processes", [1, 2])
def test_warm_frames_are_the_pixels_of_cold_frames(info, sandbox, scenes, tmp_path, processes):
    """Parts of one job rendered in the same warm processes give exactly the pixels a
    cold Blender gives for the same frames (a textured, animated scene; steps and slices)."""
    scene = scenes("--animated", "--frames", "1-20", "--size", "64", "--samples", "8")
    cold = render_frames(info, scene, PartSpan(0, 1, 9, 1), tmp_path / "cold", processes=processes, sandbox=sandbox)
    slot = WarmSlot(info, tmp_path / "slot", sandbox=sandbox)
    try:
        warm = []
        for index, (start, count) in enumerate([(1, 4), (5, 3), (8, 2)]):
            stats = RenderStats()
            warm += slot.render("job-a", scene, PartSpan(index, start, count, 1), tmp_path / f"warm-{index}",
                                processes=processes, stats=stats)
            assert sorted(s.frame for s in stats.frames) == list(range(start, start + count))
            assert all(s.seconds > 0 and s.peak_rss_bytes > 0 for s in stats.frames)
            assert (stats.load_seconds > 0) == (index == 0), "only the first part loads the scene"
            if index == 0:
                first = pids(slot)
                assert len(first) == processes
        assert pids(slot) == first, "the scene was loaded again for a part of the same job"
    finally:
        slot.close()
    same_pixels(cold, warm)
    assert not list((tmp_path / "slot" / "out").iterdir()), "frames left behind in the slot's folder"


def test_a_slot_grows_and_shrinks_with_the_processes_its_parts_get(info, sandbox, scenes, tmp_path):
    """The farm's first part of a job is a single frame (one process); a longer part after it
    gets a second process beside the first, which stays loaded; a part given one process
    again stops the spare one. Threads are shared as the cold path shares them: same pixels."""
    scene = scenes("--animated", "--frames", "1-20", "--size", "64", "--samples", "8")
    cold = render_frames(info, scene, PartSpan(0, 1, 7, 1), tmp_path / "cold", sandbox=sandbox)
    slot = WarmSlot(info, tmp_path / "slot", sandbox=sandbox)
    try:
        warm = slot.render("job", scene, PartSpan(0, 1, 1, 1), tmp_path / "w0", processes=1)
        (first,) = pids(slot)
        stats = RenderStats()
        warm += slot.render("job", scene, PartSpan(1, 2, 4, 1), tmp_path / "w1", processes=2, stats=stats)
        assert pids(slot)[0] == first and len(pids(slot)) == 2
        assert stats.load_seconds > 0, "a process started for this part loaded the scene for it"
        second = pids(slot)[1]
        warm += slot.render("job", scene, PartSpan(2, 6, 2, 1), tmp_path / "w2", processes=1)
        assert pids(slot) == [first]
        wait_for(lambda: not pid_running(second), 10, "the spare Blender to exit")
    finally:
        slot.close()
    same_pixels(cold, warm)


def test_a_spare_loads_during_a_short_part_and_waits_for_the_longer_ones(info, sandbox, scenes, tmp_path):
    """A one-frame part given two processes (render.warm_policy: the job's work left repays a
    second load) renders in one while the spare loads the scene. Through one-frame parts for
    longer than its own idle limit the spare is kept alive (pinged); the next longer part renders
    in both without loading anything, the spare's frames timed from their request (the job's
    frame limit is shorter than the spare's wait). A part told to use one process leaves the
    spare alone, and a spare that died between parts is replaced alone: the busy process keeps
    its scene."""
    scene = scenes("--animated", "--frames", "1-20", "--size", "64", "--samples", "8")
    cold = render_frames(info, scene, PartSpan(0, 1, 5, 1), tmp_path / "cold", sandbox=sandbox)
    settings = WarmSettings(idle_s=6, max_parts=1000)  # many one-frame parts below
    slot = WarmSlot(info, tmp_path / "slot", sandbox=sandbox, settings=settings)
    try:
        warm = slot.render("job", scene, PartSpan(0, 1, 1, 1), tmp_path / "w0", processes=2)
        first, spare = pids(slot)
        wait_for(lambda: not slot._runs[1].answers.empty(), 60, "the spare to say its scene is loaded")
        loaded, n = time.monotonic(), 0
        while time.monotonic() - loaded <= settings.idle_s + 1:  # one-frame parts: the spare waits
            n += 1
            slot.render("job", scene, PartSpan(n, 4, 1, 1), tmp_path / f"short-{n}", processes=2)
        assert pids(slot) == [first, spare] and slot._runs[1].proc.poll() is None, "the spare idled out"
        # Its first frames: no load, and timed from their request, not from the spare's start.
        stats = RenderStats()
        warm += slot.render("job", scene, PartSpan(98, 2, 2, 1), tmp_path / "w1", processes=2, stats=stats,
                            limits=Limits(max_frame_s=settings.idle_s / 2))
        assert pids(slot) == [first, spare] and stats.load_seconds == 0, "a process was started for the part"
        assert sorted(s.frame for s in stats.frames) == [2, 3]
        slot.render("job", scene, PartSpan(99, 4, 2, 1), tmp_path / "one", processes=2, use=1,
                    log_path=tmp_path / "one.log")
        assert pids(slot) == [first, spare]
        lines = (tmp_path / "one.log").read_text().splitlines()
        assert any(line.startswith("[1] Fra:") for line in lines) and not any(l.startswith("[2] ") for l in lines)
        warm += slot.render("job", scene, PartSpan(100, 4, 2, 1), tmp_path / "w2", processes=2)
        assert pids(slot) == [first, spare]
        os.killpg(spare, signal.SIGKILL)
        wait_for(lambda: slot._runs[1].proc.poll() is not None, 10, "the killed spare to exit")
        slot.render("job", scene, PartSpan(101, 7, 2, 1), tmp_path / "w3", processes=2)
        assert pids(slot)[0] == first and len(pids(slot)) == 2 and spare not in pids(slot)
    finally:
        slot.close()
    same_pixels(cold, warm)


def test_another_jobs_part_gets_a_fresh_blender_with_its_own_scene(info, sandbox, scenes, tmp_path):
    """A slot never renders one job's frames with another job's scene loaded."""
    first = scenes("--animated", "--size", "48", "--samples", "2")
    other = scenes("--size", "48", "--samples", "2", "--no-texture")
    slot = WarmSlot(info, tmp_path / "slot", sandbox=sandbox)
    try:
        slot.render("job-a", first, PartSpan(0, 1, 2, 1), tmp_path / "a")
        before = pids(slot)
        assert slot.job == "job-a"
        warm = slot.render("job-b", other, PartSpan(0, 1, 2, 1), tmp_path / "b")
        assert slot.job == "job-b" and pids(slot) != before
        assert not any(pid_running(pid) for pid in before), "job a's Blender outlived its job on the slot"
    finally:
        slot.close()
    same_pixels(render_frames(info, other, PartSpan(0, 1, 2, 1), tmp_path / "cold-b", sandbox=sandbox), warm)


def pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def test_a_crashed_warm_blender_fails_its_part_and_the_next_part_starts_a_new_one(info, sandbox, scenes, tmp_path):
    scene = scenes("--animated", "--size", "48", "--samples", "2")
    slot = WarmSlot(info, tmp_path / "slot", sandbox=sandbox)
    try:
        slot.render("job", scene, PartSpan(0, 1, 1, 1), tmp_path / "p0")
        # Dies between parts: the next part notices and starts afresh.
        os.killpg(pids(slot)[0], signal.SIGKILL)
        wait_for(lambda: slot._runs[0].proc.poll() is not None, 10, "the killed Blender to exit")
        assert [p.name for p in slot.render("job", scene, PartSpan(1, 2, 1, 1), tmp_path / "p1")] == ["0002.png"]
        # Dies during a part: the part fails (retried by the farm as today), nothing is left running.
        slow = scenes("--size", "64", "--samples", "1000000")
        killer = threading.Thread(target=kill_when_rendering, args=(slot,))
        killer.start()
        with pytest.raises(RenderError, match="Blender was killed"):
            slot.render("slow-job", slow, PartSpan(0, 1, 1, 1), tmp_path / "p2")
        killer.join()
        assert slot.job is None and not slot._runs
    finally:
        slot.close()


def rendering(slot: WarmSlot) -> bool:
    runs = list(slot._runs)
    return bool(runs) and runs[0].clock.frame is not None  # Blender said `Fra:` for this part


def kill_when_rendering(slot: WarmSlot) -> None:
    wait_for(lambda: rendering(slot), 60, "Blender to start rendering")
    os.killpg(pids(slot)[0], signal.SIGKILL)


def test_cancel_stops_the_warm_blender_at_once(info, sandbox, scenes, tmp_path):
    slow = scenes("--size", "64", "--samples", "1000000")
    slot = WarmSlot(info, tmp_path / "slot", sandbox=sandbox)
    cancel = threading.Event()
    failed: list[BaseException] = []

    def run() -> None:
        try:
            slot.render("job", slow, PartSpan(0, 1, 1, 1), tmp_path / "p", cancel=cancel)
        except BaseException as e:  # checked below
            failed.append(e)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        wait_for(lambda: rendering(slot), 60, "Blender to start rendering")
        running = pids(slot)
        cancel.set()
        thread.join(timeout=10)
        assert not thread.is_alive() and isinstance(failed[0], RenderCancelled)
        assert not any(pid_running(pid) for pid in running)
        assert slot.job is None
    finally:
        cancel.set()
        thread.join(timeout=10)
        slot.close()


def test_max_frame_seconds_applies_to_each_frame_of_a_warm_part(info, sandbox, scenes, tmp_path):
    quick = scenes("--animated", "--size", "48", "--samples", "2")
    slot = WarmSlot(info, tmp_path / "slot", sandbox=sandbox)
    try:
        slot.render("job", quick, PartSpan(0, 1, 2, 1), tmp_path / "p0", limits=Limits(max_frame_s=30))
        slow = scenes("--size", "64", "--samples", "1000000")
        with pytest.raises(RenderError, match=r"frame 1 took longer than 2 s") as caught:
            slot.render("slow", slow, PartSpan(0, 1, 1, 1), tmp_path / "p1", limits=Limits(max_frame_s=2))
        assert not caught.value.deterministic and slot.job is None
    finally:
        slot.close()


def test_a_warm_blender_is_replaced_after_its_parts_and_past_its_memory(info, sandbox, scenes, tmp_path):
    scene = scenes("--animated", "--size", "48", "--samples", "2")
    slot = WarmSlot(info, tmp_path / "slot", sandbox=sandbox, settings=WarmSettings(max_parts=2))
    try:
        slot.render("job", scene, PartSpan(0, 1, 1, 1), tmp_path / "p0")
        first = pids(slot)
        slot.render("job", scene, PartSpan(1, 2, 1, 1), tmp_path / "p1")
        assert slot.job is None and not any(pid_running(pid) for pid in first), "not replaced after 2 parts"
    finally:
        slot.close()
    greedy = WarmSlot(info, tmp_path / "slot2", sandbox=sandbox, settings=WarmSettings(max_memory=1 << 20))
    try:
        greedy.render("job", scene, PartSpan(0, 1, 1, 1), tmp_path / "p2")
        assert greedy.job is None, "a Blender holding more than --warm-max-memory was kept"
    finally:
        greedy.close()


def test_the_bpy_back_end_renders_warm_with_the_pixels_of_its_cold_render(scenes, tmp_path):
    from test_addon import bpy_python

    launcher = write_launcher(bpy_python(), tmp_path / "bpy" / "blender-bpy")
    info = probe_blender(str(launcher))
    scene = scenes("--animated", "--frames", "1-10", "--size", "48", "--samples", "4")
    cold = render_frames(info, scene, PartSpan(0, 2, 3, 2), tmp_path / "cold")
    slot = WarmSlot(info, tmp_path / "slot")
    try:
        warm = slot.render("job", scene, PartSpan(0, 2, 2, 2), tmp_path / "w0")
        warm += slot.render("job", scene, PartSpan(1, 6, 1, 2), tmp_path / "w1")
    finally:
        slot.close()
    same_pixels(cold, warm)
