"""Movies made on the farm (issue 12 item 4, issue 15 item 1), with real workers, Blender and ffmpeg.

`framefarm submit --movie` adds an H.264 MP4 preview of any job's frames, beside them in the zip
and behind its own signed link; a scene set to a video output gets the movie it asks for, its
frames too with --keep-frames. The encode task is an ordinary part: a worker killed in the
middle of it leaves it to another. (The movie of a video scene with sound, against plain
Blender's, is in test_real_world_scenes.py; the gateway's side in test_finishing.py.)
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import urllib.request
from pathlib import Path

from farmtools import check_frames, framefarm_cli, make_scene, require, wait_for
from framefarm.common.api import FarmAPI
from framefarm.common.http import Client


def probe(movie: Path) -> dict:
    """What ffprobe reads: the video stream's codec, frame rate and frame count, and the audio codec."""
    out = subprocess.run([require("ffprobe"), "-v", "error", "-count_frames", "-show_entries",
                          "stream=codec_type,codec_name,r_frame_rate,nb_read_frames", "-of", "json", str(movie)],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    streams = json.loads(out)["streams"]
    video = next(s for s in streams if s["codec_type"] == "video")
    audio = [s["codec_name"] for s in streams if s["codec_type"] == "audio"]
    return {"codec": video["codec_name"], "fps": video["r_frame_rate"], "frames": int(video["nb_read_frames"]),
            "audio": audio[0] if audio else None}


def plain_blender_movie(scene: Path, out: Path) -> Path:
    """The movie plain `blender -b FILE -a` writes for a video scene."""
    out.mkdir(parents=True, exist_ok=True)
    run = subprocess.run([require("blender"), "-b", str(scene), "-o", f"{out}/", "-a"], capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:]
    movies = list(out.iterdir())
    assert len(movies) == 1, movies
    return movies[0]


def submit(env: dict[str, str], scene: Path, out: Path, *args: str) -> dict:
    run = framefarm_cli("submit", str(scene), "--wait", "--json", "--output", str(out), *args, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Traceback" not in run.stdout + run.stderr
    return json.loads(run.stdout)


def test_a_preview_beside_the_frames_and_a_video_scene_with_its_frames(cluster, tmp_path):
    require("ffmpeg")
    frames = make_scene(tmp_path / "frames" / "scene.blend", "--size", "64", "--frames", "1-4", "--samples", "1")
    video = make_scene(tmp_path / "video" / "scene.blend", "--size", "64", "--frames", "1-3", "--samples", "1",
                       "--format", "FFMPEG")
    cluster.add_gateway()
    cluster.add_worker()
    env = cluster.client_env()

    job = submit(env, frames, tmp_path / "out", "--frames", "1-4", "--movie")
    assert job["finish"]["kind"] == "encode" and job["finish"]["state"] == "done", job
    preview = tmp_path / "out" / "preview.mp4"
    (tmp_path / "only-frames").mkdir()
    for f in range(1, 5):
        os.link(tmp_path / "out" / f"{f:04d}.png", tmp_path / "only-frames" / f"{f:04d}.png")
    check_frames(tmp_path / "only-frames", [1, 2, 3, 4], (64, 64))
    assert probe(preview) == {"codec": "h264", "fps": "24/1", "frames": 4, "audio": None}
    # Its own signed link, no token needed: the same bytes as the zip's.
    with urllib.request.urlopen(job["movie_url"], timeout=30) as resp:
        assert resp.read() == preview.read_bytes()

    # A video scene with --keep-frames: its PNG frames, and the movie plain Blender would make.
    job = submit(env, video, tmp_path / "video-out", "--frames", "1-3", "--keep-frames")
    assert job["format"] == "PNG" and job["finish"]["options"] == {"video": "scene"}
    blender = plain_blender_movie(video, tmp_path / "blender")
    names = sorted(p.name for p in (tmp_path / "video-out").iterdir())
    assert names == sorted(["0001.png", "0002.png", "0003.png", blender.name]), names
    assert probe(tmp_path / "video-out" / blender.name) == probe(blender)


def test_an_encode_worker_killed_midway_leaves_the_movie_to_another(cluster, tmp_path):
    require("ffmpeg")
    scene = make_scene(tmp_path / "scene" / "scene.blend", "--size", "64", "--frames", "1-2", "--samples", "1")
    # The first worker's ffmpeg takes its time (it waits before the real one runs), so that it is
    # surely in the middle of the encode when it is killed.
    slow = tmp_path / "slow-bin"
    slow.mkdir()
    (slow / "ffmpeg").write_text(f"#!/bin/sh\nsleep 600\nexec {require('ffmpeg')} \"$@\"\n")
    (slow / "ffmpeg").chmod(0o755)
    cluster.add_gateway()
    first = cluster.add_worker(env={"PATH": f"{slow}:{os.environ['PATH']}"})
    env = cluster.client_env()
    run = framefarm_cli("submit", str(scene), "--frames", "1-2", "--movie", "--json", env=env)
    assert run.returncode == 0, run.stderr
    job_id = json.loads(run.stdout)["id"]
    api = FarmAPI(Client(cluster.urls, cluster.tokens.client))
    wait_for(lambda: api.job(job_id)["finish"]["state"] == "leased", 120, "the encode part to be leased")
    wait_for(lambda: "encode from" in first.tail(200), 30, "the first worker to start encoding")
    os.killpg(first.pid, signal.SIGKILL)
    cluster.add_worker()
    wait_for(lambda: api.job(job_id)["status"] in ("done", "failed"), 120, "the job to end")
    job = api.job(job_id)
    assert job["status"] == "done", job
    assert job["finish"]["state"] == "done" and job["finish"]["attempts"] == 1
    assert "lease expired" in (job["finish"]["error"] or "")
    out = tmp_path / "out"
    api.download_archive(job_id, tmp_path / "job.zip")
    import zipfile
    with zipfile.ZipFile(tmp_path / "job.zip") as zf:
        assert sorted(zf.namelist()) == ["0001.png", "0002.png", "preview.mp4"]
        zf.extract("preview.mp4", out)
    assert probe(out / "preview.mp4")["frames"] == 2
