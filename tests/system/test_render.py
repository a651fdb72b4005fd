"""The worker's render back end against the real Blender, plus frames_check on every
format Blender writes (unit/test_render_helpers.py and unit/test_frames_check.py hold
the parts that need no Blender).

Scenes come from scripts/make_scene.py, built once per module in parallel. Failures
are pinned to the text Blender 3.4.1 prints, because that text is what the artist
sees, and to whether a retry could help, because that decides whether the farm
retries the part or fails the job.
"""
from __future__ import annotations

import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from farmtools import require_blender
from PIL import Image

from framefarm.common.frameset import FrameRange
from framefarm.worker.frames_check import FrameCheckError, check_frame
from framefarm.worker.render import BlenderInfo, RenderCancelled, RenderError, probe_blender, render_frames

MAKE_SCENE = Path(__file__).resolve().parents[2] / "scripts" / "make_scene.py"
SCENES: dict[str, list[str]] = {
    "base": ["--animated"],
    "denoise": ["--denoise"],
    "no_camera": ["--no-camera"],
    "ffmpeg": ["--format", "FFMPEG"],
    "exr": ["--format", "OPEN_EXR"],
    "slow": ["--size", "64", "--samples", "1000000"],
}


@pytest.fixture(scope="module")
def info() -> BlenderInfo:
    return probe_blender(require_blender())


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    blender = require_blender()
    folder = tmp_path_factory.mktemp("scenes")

    def make(name: str) -> Path:
        out = folder / f"{name}.blend"
        cmd = [blender, "-b", "--factory-startup", "--python-exit-code", "1", "--python", str(MAKE_SCENE),
               "--", "--output", str(out), "--size", "48", "--frames", "1-250", "--samples", "2", *SCENES[name]]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        return out

    with ThreadPoolExecutor(len(SCENES)) as pool:
        made = dict(zip(SCENES, pool.map(make, SCENES), strict=True))
    data = made["base"].read_bytes()
    (folder / "truncated.blend").write_bytes(data[: len(data) // 3])
    (folder / "garbage.blend").write_bytes(b"this is not a blend file\n" * 50)
    assert data[9:12] == b"304", "the version patch below expects an uncompressed 3.4 file"
    (folder / "newer.blend").write_bytes(data[:9] + b"999" + data[12:])  # as if saved by 9.99
    return {**made, **{name: folder / f"{name}.blend" for name in ("truncated", "garbage", "newer")}}


def names(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


# -- probing -----------------------------------------------------------

def test_probe_reports_version_and_cpu(info: BlenderInfo) -> None:
    major, minor = map(int, info.version_string.split(".")[:2])
    assert info.version == major * 100 + minor
    assert info.devices[0] == "CPU"
    assert Path(info.path).is_absolute()
    assert isinstance(info.has_oidn, bool)


# -- rendering ------------------------------------------------------------------------------

def test_renders_exact_frame_files(info: BlenderInfo, scenes: dict[str, Path], tmp_path: Path) -> None:
    log = tmp_path / "render.log"
    out = tmp_path / "frames"
    result = render_frames(info, scenes["base"], FrameRange(250, 253), out, log_path=log)
    assert [path.name for path in result] == ["0250.png", "0251.png", "0252.png", "0253.png"]
    assert names(out) == ["0250.png", "0251.png", "0252.png", "0253.png"]
    for path in result:
        assert path.parent == out.resolve()
        with Image.open(path) as image:
            assert image.size == (48, 48)
    text = log.read_text()
    assert "--disable-autoexec" in text and "--cycles-device CPU" in text and "Saved:" in text


def test_step_and_split_render_the_same_frames(info: BlenderInfo, scenes: dict[str, Path],
                                               tmp_path: Path) -> None:
    frames = FrameRange(250, 258, 2)
    one = render_frames(info, scenes["base"], frames, tmp_path / "one")
    two = render_frames(info, scenes["base"], frames, tmp_path / "two", processes=2, threads=2,
                        log_path=tmp_path / "two.log")
    assert names(tmp_path / "one") == names(tmp_path / "two") == ["0250.png", "0252.png", "0254.png",
                                                                   "0256.png", "0258.png"]
    # The scene is animated, so equal pixels mean each process rendered the right frame.
    for a, b in zip(one, two, strict=True):
        with Image.open(a) as image_a, Image.open(b) as image_b:
            assert image_a.tobytes() == image_b.tobytes(), a.name
    log = (tmp_path / "two.log").read_text()
    assert "[0] $ " in log and "[1] $ " in log and "-s 250 -e 254 -j 2" in log and "-s 256 -e 258 -j 2" in log


def test_single_frame(info: BlenderInfo, scenes: dict[str, Path], tmp_path: Path) -> None:
    assert [p.name for p in render_frames(info, scenes["base"], FrameRange(7, 7), tmp_path)] == ["0007.png"]


def test_denoising_is_switched_off_without_oidn(info: BlenderInfo, scenes: dict[str, Path],
                                               tmp_path: Path) -> None:
    log = tmp_path / "render.log"
    result = render_frames(info, scenes["denoise"], FrameRange(1, 2), tmp_path / "out", log_path=log)
    assert [path.name for path in result] == ["0001.png", "0002.png"]
    if not info.has_oidn:
        assert "denoising switched off" in log.read_text()


def test_exr_output_is_checked(info: BlenderInfo, scenes: dict[str, Path], tmp_path: Path) -> None:
    result = render_frames(info, scenes["exr"], FrameRange(1, 2), tmp_path)
    assert [path.name for path in result] == ["0001.exr", "0002.exr"]
    data = result[0].read_bytes()
    result[0].write_bytes(data[: len(data) - 100])
    with pytest.raises(FrameCheckError, match="truncated"):
        check_frame(result[0], 48, 48)
    with pytest.raises(FrameCheckError, match="48x48 pixels, expected 64x48"):
        check_frame(result[1], 64, 48)


@pytest.mark.parametrize("scene, message", [
    ("no_camera", "^Cannot render, no camera$"),
    ("ffmpeg", "output format is FFMPEG, a video"),
    ("truncated", "^Failed to read blend file '.*truncated.blend'"),
    ("garbage", "^File format is not supported in file '.*garbage.blend'$"),
    ("newer", "saved by Blender 9.99, newer than this worker's Blender 3.4"),
])
def test_scene_errors_are_deterministic(info: BlenderInfo, scenes: dict[str, Path], tmp_path: Path,
                                        scene: str, message: str) -> None:
    with pytest.raises(RenderError, match=message) as caught:
        render_frames(info, scenes[scene], FrameRange(1, 2), tmp_path / "out")
    assert caught.value.deterministic
    assert caught.value.log_tail  # Blender's output, for the failure report
    assert names(tmp_path / "out") == []


def blender_pids(marker: Path) -> list[int]:
    """Processes whose command line mentions `marker`: psutil-free, straight from /proc."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if str(marker).encode() in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs /proc")
def test_cancel_stops_blender(info: BlenderInfo, scenes: dict[str, Path], tmp_path: Path) -> None:
    out, log, cancel = tmp_path / "out", tmp_path / "render.log", threading.Event()
    raised: list[BaseException] = []

    def run() -> None:
        try:
            render_frames(info, scenes["slow"], FrameRange(1, 4), out, processes=2, cancel=cancel, log_path=log)
        except BaseException as exc:  # handed to the test thread
            raised.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 60
    while "Fra:" not in (log.read_text() if log.exists() else "") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(blender_pids(out)) == 2, "both Blender processes should be rendering"
    started = time.monotonic()
    cancel.set()
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert time.monotonic() - started < 10
    assert len(raised) == 1 and isinstance(raised[0], RenderCancelled), raised
    assert blender_pids(out) == []


SAVE_EVERY_FORMAT = """
import bpy
s = bpy.context.scene
s.cycles.use_denoising = False
s.render.resolution_x, s.render.resolution_y, s.render.resolution_percentage = 50, 30, 100
bpy.ops.render.render()
for fmt in {formats!r}:
    s.render.image_settings.file_format = fmt
    bpy.data.images["Render Result"].save_render(filepath={folder!r} + "/" + fmt + s.render.file_extension, scene=s)
"""


def test_check_frame_reads_every_image_format_blender_writes(scenes: dict[str, Path], tmp_path: Path) -> None:
    """Real files from Blender's writers (JPEG 2000 is left out: Debian's 3.4 cannot write it)."""
    formats = ["PNG", "JPEG", "BMP", "TIFF", "TARGA", "TARGA_RAW", "IRIS", "HDR", "DPX", "CINEON",
               "OPEN_EXR", "OPEN_EXR_MULTILAYER"]
    code = SAVE_EVERY_FORMAT.format(formats=formats, folder=str(tmp_path))
    done = subprocess.run([require_blender(), "-b", "-Y", str(scenes["base"]), "--python-exit-code", "1",
                           "--python-expr", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:]
    files = sorted(tmp_path.iterdir())
    assert len(files) == len(formats)
    for path in files:
        check_frame(path, 50, 30)
        with pytest.raises(FrameCheckError, match="expected 30x50"):
            check_frame(path, 30, 50)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) * 9 // 10])
        with pytest.raises(FrameCheckError):
            check_frame(path, 50, 30)
