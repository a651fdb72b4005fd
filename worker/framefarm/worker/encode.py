"""The "encode" finishing task: a movie of a job's frames, made with ffmpeg on a worker.

Two movies (the job's `finish.options.video`):
- "scene": the movie the scene's own FFMPEG output asks for (a scene set to a video output
  renders its frames as lossless PNG, then this encodes them): container, codec, quality
  (constant rate factor or bitrate), keyframe interval, frame rate (fps / fps_base), and the
  sequencer's sound mixed down by Blender where the scene has sound strips and an audio codec.
- "preview": an H.264 MP4 of any job's frames at the scene's frame rate (`framefarm submit --movie`).

The scene is as untrusted as ever: Blender reads its settings in the sandbox (Python auto-run
off), and every value reaches ffmpeg only through the tables below (enum names to encoder
names, numbers clamped to sane ranges), as separate arguments, never through a shell. ffmpeg
runs in the sandbox too, reading only the frames and the mixed-down sound (file protocol
only) and writing only the output folder; the file names are the worker's own.
"""
from __future__ import annotations

import functools
import inspect
import json
import os
import re
import shutil
import signal
import subprocess
import threading
from collections import deque
from fractions import Fraction
from pathlib import Path

from framefarm.common.procs import die_with_parent

from .finishing import FinishOptions
from .render import RenderCancelled, RenderError
from .sandbox import clean_env

TAIL_LINES = 40
STOP_GRACE_S = 5.0
_MARKER = "FRAMEFARM-VIDEO "

# Blender's container names -> ffmpeg's muxer and the file extension Blender gives them.
CONTAINERS = {"MPEG1": ("mpeg", ".mpg"), "MPEG2": ("dvd", ".dvd"), "MPEG4": ("mp4", ".mp4"),
              "AVI": ("avi", ".avi"), "QUICKTIME": ("mov", ".mov"), "DV": ("dv", ".dv"), "OGG": ("ogg", ".ogv"),
              "MKV": ("matroska", ".mkv"), "FLASH": ("flv", ".flv"), "WEBM": ("webm", ".webm")}
# Blender's video codec names -> ffmpeg's encoder, and whether it takes 4:2:0 YUV (most lossy ones).
CODECS = {"H264": ("libx264", True), "H265": ("libx265", True), "MPEG4": ("mpeg4", True),
          "MPEG1": ("mpeg1video", True), "MPEG2": ("mpeg2video", True), "THEORA": ("libtheora", True),
          "WEBM": ("libvpx-vp9", True), "AV1": ("libaom-av1", True), "FLASH": ("flv", True),
          "DV": ("dvvideo", True), "DNXHD": ("dnxhd", False), "PRORES": ("prores_ks", False),
          "FFV1": ("ffv1", False), "HUFFYUV": ("huffyuv", False), "PNG": ("png", False), "QTRLE": ("qtrle", False)}
# Codecs whose quality is set by a constant rate factor (Blender offers it for these).
CRF_CODECS = {"libx264", "libx265", "libvpx-vp9", "libaom-av1"}
# Blender's quality names -> the CRF it uses for them.
CRF = {"LOSSLESS": 0, "PERC_LOSSLESS": 17, "HIGH": 20, "MEDIUM": 23, "LOW": 26, "VERYLOW": 29, "LOWEST": 32}
PRESETS = {"BEST": "slow", "GOOD": "medium", "REALTIME": "ultrafast"}
AUDIO = {"AAC": "aac", "AC3": "ac3", "FLAC": "flac", "MP2": "mp2", "MP3": "libmp3lame", "OPUS": "libopus",
         "PCM": "pcm_s16le", "VORBIS": "libvorbis"}
CHANNELS = {"MONO": 1, "STEREO": 2, "SURROUND4": 4, "SURROUND51": 6, "SURROUND71": 8}
MAX_FPS = 1000
_NAME = re.compile(r"[^A-Za-z0-9._-]+")


@functools.cache
def ffmpeg() -> str | None:
    """Debian's ffmpeg, else the imageio-ffmpeg wheel's; None where neither is installed."""
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg  # type: ignore[import-not-found]
        return str(imageio_ffmpeg.get_ffmpeg_exe())
    except (ImportError, RuntimeError):
        return None


def available() -> bool:
    return ffmpeg() is not None


def _scene_video(params: dict) -> None:
    """Runs inside Blender: print the scene's frame rate, output movie settings and movie name,
    and mix the sequencer's sound down to `params["audio"]` when asked and there is any.
    Its source is copied into a script, so it imports what it needs itself (Python 3.10+)."""
    import json
    import os

    import bpy

    scene = bpy.context.scene
    assert scene is not None  # a background Blender that has just loaded the scene
    render = scene.render
    ff = render.ffmpeg
    assert ff is not None
    edit = scene.sequence_editor
    strips = [] if edit is None else (getattr(edit, "strips_all", None) or edit.sequences_all)
    sound = any(strip.type == "SOUND" and not strip.mute for strip in strips)
    out = {"fps": render.fps, "fps_base": render.fps_base, "is_movie": render.is_movie_format,
           "format": ff.format, "codec": ff.codec, "crf": ff.constant_rate_factor, "preset": ff.ffmpeg_preset,
           "bitrate": ff.video_bitrate, "gop": ff.gopsize, "audio_codec": ff.audio_codec,
           "audio_bitrate": ff.audio_bitrate, "audio_channels": ff.audio_channels, "audio_rate": ff.audio_mixrate,
           "name": os.path.basename(render.frame_path(frame=params["start"])) if render.is_movie_format else "",
           "audio": False}
    if params["audio"] and sound:
        scene.frame_start, scene.frame_end = params["start"], params["end"]
        # At the scene's own mix rate and channels (its audio settings), as Blender's own movie would be.
        bpy.ops.sound.mixdown(filepath=params["audio"], check_existing=False, relative_path=False,
                              container="WAV", codec="PCM", format="S16")
        out["audio"] = os.path.isfile(params["audio"])
    print("FRAMEFARM-" + "VIDEO " + json.dumps(out), flush=True)


def finish(inputs: Path, output: Path, options: FinishOptions) -> list[Path]:
    video = options.job.get("video", "scene")
    if video not in ("scene", "preview"):
        raise RenderError(f"finish.options.video must be scene or preview, not {str(video)[:40]!r}",
                          deterministic=True)
    span = options.span
    frames = options.frame_files()
    missing = [f for f in span.frames() if f not in frames]
    if missing:
        raise RenderError(f"the frame parts' results lack frames {missing[:10]}")
    work = inputs.parent / "encode"
    seq = work / "frames"
    seq.mkdir(parents=True, exist_ok=True)
    ext = frames[span.start].suffix.lower()
    for i, frame in enumerate(span.frames()):  # one unbroken sequence, whatever the job's step
        os.link(frames[frame], seq / f"{i:07d}{ext}")
    # Sound only where the movie keeps every frame: with a step the picture runs faster than it.
    settings = read_scene(options, work, span.step == 1)
    if video == "preview":
        cmd, name = preview_args(settings)
    else:
        cmd, name = scene_args(settings, span.start, span.end)
    sound = settings.get("audio") and (video == "preview" or str(settings.get("audio_codec")) in AUDIO)
    audio = work / "sound.wav" if sound else None
    target = output / name
    exe = ffmpeg()
    assert exe is not None  # finishing.run asked available() first
    argv = [exe, "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-protocol_whitelist", "file",
            "-framerate", fps_of(settings), "-start_number", "0", "-i", str(seq / f"%07d{ext}")]
    if audio is not None:
        argv += ["-i", str(audio), "-map", "0:v:0", "-map", "1:a:0", "-shortest"]
    else:
        argv += ["-map", "0:v:0"]
    argv += [*cmd, *([] if audio is not None else ["-an"]), str(target)]
    run(options.sandbox.command(argv, read_only=[work], writable=[output]), options, "ffmpeg")
    if not target.is_file() or target.stat().st_size == 0:
        raise RenderError(f"ffmpeg made no movie ({name})")
    return [target]


def read_scene(options: FinishOptions, work: Path, audio: bool) -> dict:
    """The scene's settings as Blender reads them, in the sandbox; the sound mixed down if asked."""
    root, main = options.scene()
    params = {"start": options.span.start, "end": options.span.end,
              "audio": str(work / "sound.wav") if audio else ""}
    script = work / "scene_video.py"
    script.write_text(f"{inspect.getsource(_scene_video)}\n_scene_video({params!r})\n", encoding="utf-8")
    cmd = [options.blender.path, "-b", "--factory-startup", "--disable-autoexec", str(main),
           "--python-exit-code", "2", "--python", str(script)]
    lines = run(options.sandbox.command(cmd, read_only=[root], writable=[work]), options, "Blender")
    for line in reversed(lines):
        if line.startswith(_MARKER):
            return dict(json.loads(line[len(_MARKER):]))
    raise RenderError("Blender did not read the scene's video settings", "\n".join(lines))


def fps_of(settings: dict) -> str:
    """The scene's frame rate, fps / fps_base, as the exact fraction ffmpeg takes (24000/1001)."""
    try:
        rate = Fraction(int(settings["fps"])) / Fraction(float(settings["fps_base"])).limit_denominator(100000)
    except (ValueError, ZeroDivisionError, TypeError, KeyError, OverflowError):
        raise RenderError(f"the scene's frame rate is not a number: {settings.get('fps')!r} / "
                          f"{settings.get('fps_base')!r}", deterministic=True) from None
    rate = rate.limit_denominator(1001)
    if not 0 < rate <= MAX_FPS:
        raise RenderError(f"the scene's frame rate {float(rate):.3f} fps is outside 0-{MAX_FPS}", deterministic=True)
    return f"{rate.numerator}/{rate.denominator}"


def _even() -> list[str]:
    # 4:2:0 video needs even sizes: a 65-pixel-wide frame loses its last column.
    return ["-vf", "scale=trunc(iw/2)*2:trunc(ih/2)*2", "-pix_fmt", "yuv420p"]


def preview_args(settings: dict) -> tuple[list[str], str]:
    """An H.264 MP4 any player opens, at a fixed, moderate quality."""
    return ["-c:v", "libx264", "-preset", "medium", "-crf", "23", *_even(), "-movflags", "+faststart",
            "-c:a", "aac", "-b:a", "192k", "-f", "mp4"], "preview.mp4"


def scene_args(settings: dict, start: int, end: int) -> tuple[list[str], str]:
    """The encoder arguments for the scene's own movie, every value through a table or a clamp."""
    container = CONTAINERS.get(str(settings.get("format")))
    codec = CODECS.get(str(settings.get("codec")))
    if container is None or codec is None:
        raise RenderError(f"the scene's movie ({str(settings.get('format'))[:20]} with "
                          f"{str(settings.get('codec'))[:20]}) is not one this farm can encode", deterministic=True)
    muxer, ext = container
    encoder, yuv = codec
    args = ["-c:v", encoder, *(_even() if yuv else [])]
    crf = CRF.get(str(settings.get("crf")))
    if encoder in CRF_CODECS and crf is not None:
        args += ["-crf", str(crf)]
        if encoder == "libvpx-vp9":
            args += ["-b:v", "0"]  # VP9's constant quality mode
    elif encoder not in ("ffv1", "huffyuv", "png", "qtrle"):
        args += ["-b:v", f"{_clamp(settings.get('bitrate'), 1, 200_000, 6000)}k"]
    if encoder in ("libx264", "libx265"):
        args += ["-preset", PRESETS.get(str(settings.get("preset")), "medium")]
    gop = _clamp(settings.get("gop"), 0, 1000, 18)
    if gop and encoder not in ("png", "ffv1", "huffyuv", "qtrle", "dnxhd", "prores_ks", "dvvideo"):
        args += ["-g", str(gop)]
    audio = AUDIO.get(str(settings.get("audio_codec")))
    if audio is not None and settings.get("audio"):  # the caller maps the sound only then too
        args += ["-c:a", audio, "-ac", str(CHANNELS.get(str(settings.get("audio_channels")), 2)),
                 "-ar", str(_clamp(settings.get("audio_rate"), 8000, 192_000, 48000))]
        if audio not in ("flac", "pcm_s16le"):
            args += ["-b:a", f"{_clamp(settings.get('audio_bitrate'), 32, 512, 192)}k"]
    name = safe_name(str(settings.get("name") or ""), f"{start:04d}-{end:04d}", ext)
    return [*args, "-f", muxer], name


def safe_name(blender_name: str, fallback: str, ext: str) -> str:
    """The movie's file name as Blender would write it, cut to what a result may hold (a plain name)."""
    stem = blender_name[:-len(ext)] if blender_name.lower().endswith(ext) else Path(blender_name).stem
    stem = _NAME.sub("_", stem).lstrip("._-")[:100] or fallback
    return stem + ext


def _clamp(value: object, low: int, high: int, default: int) -> int:
    try:
        number = int(float(str(value)))
    except (TypeError, ValueError, OverflowError):
        return default
    return max(low, min(high, number))


def run(cmd: list[str], options: FinishOptions, what: str) -> list[str]:
    """Run `cmd` (already sandboxed), stopped at once when the part is cancelled; its output's
    last lines, and every line it printed with the FRAMEFARM- marker. A failure is a RenderError
    with them (retried, elsewhere too, as a render's is: an encoder missing here may be found there)."""
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    marked: list[str] = []  # our own lines, kept whatever follows them
    log = options.log_path.open("a", encoding="utf-8") if options.log_path else None
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, errors="replace", env=clean_env(), start_new_session=True,
                                preexec_fn=die_with_parent(signal.SIGKILL))
    except OSError as e:
        raise RenderError(f"cannot start {what}: {e}") from None
    reader = threading.Thread(target=_drain, args=(proc, tail, marked, log), daemon=True)
    reader.start()
    try:
        while proc.poll() is None:
            if options.cancel.wait(0.1):
                raise RenderCancelled(f"{what} stopped: the part was cancelled")
    finally:
        _stop(proc)
        reader.join(timeout=10)
        if log is not None:
            log.close()
    if proc.returncode != 0:
        errors = [line for line in tail if "rror" in line and "script failed" not in line]
        message = errors[-1].strip() if errors else f"exit code {proc.returncode}"
        raise RenderError(f"{what} failed: {message}"[:2000], "\n".join(tail))
    return [*marked, *tail]


def _drain(proc: subprocess.Popen, tail: deque[str], marked: list[str], log) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        tail.append(line.rstrip("\r\n"))
        if line.startswith(_MARKER) and len(marked) < 4:
            marked.append(line.rstrip("\r\n"))
        if log is not None:
            try:
                log.write(line)
            except OSError:
                log = None


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass


