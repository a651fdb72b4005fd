"""Attacks on the farm's movies: a hostile scene's video settings, a hostile worker's movie.

The scene is untrusted: its codec, container, quality, frame rate and output path reach ffmpeg
only through worker/encode.py's tables and clamps, as separate arguments, and ffmpeg runs in the
sandbox reading only the frames and writing only its output folder. A worker is untrusted too:
its encode result is bounded like frames, named plainly, and it gets the job's inputs only
through its own lease on the finishing part.
"""
from __future__ import annotations

import io
import threading
import zipfile

import pytest

from apitools import bearer, claim, expect_error, lease, put_result, scene_bytes, scene_sha, submit, unchanged
from farmtools import require, require_blender
from framefarm.common.frameset import PartSpan
from framefarm.worker import encode, sandbox
from framefarm.worker.finishing import FinishOptions, InputPart
from framefarm.worker.render import RenderError, probe_blender

__all__ = ["scene_bytes", "scene_sha"]  # fixtures, imported for pytest

HOSTILE = ["-i /etc/passwd", "../../etc/shadow", "H264 -f null", "concat:/etc/passwd", "http://127.0.0.1:9/x",
           "-y", "\n-map 0", "%n", "'; rm -rf / #"]


@pytest.mark.parametrize("value", HOSTILE)
@pytest.mark.parametrize("field", ["format", "codec", "crf", "preset", "audio_codec", "audio_channels"])
def test_hostile_enum_values_never_reach_ffmpeg(field, value):
    settings = {"format": "MPEG4", "codec": "H264", "crf": "MEDIUM", "preset": "GOOD", "bitrate": 6000, "gop": 18,
                "audio_codec": "AAC", "audio_channels": "STEREO", "audio_rate": 48000, "audio_bitrate": 192,
                "audio": True, "name": "0001-0004.mp4", field: value}
    try:
        args, name = encode.scene_args(settings, 1, 4)
    except RenderError as e:  # an unknown container or codec is refused, for good, with the reason
        assert field in ("format", "codec") and e.deterministic
        return
    assert not any(value in arg or arg in value for arg in args if len(arg) > 2), args
    assert name == "0001-0004.mp4"


@pytest.mark.parametrize("number", [-1, 10**30, "1e999", "nan", "-5; ls", None, [1], {"a": 1}])
def test_absurd_numbers_are_clamped(number):
    settings = {"format": "MPEG4", "codec": "MPEG4", "crf": "NONE", "bitrate": number, "gop": number,
                "audio_codec": "MP3", "audio_rate": number, "audio_bitrate": number, "audio": True, "name": ""}
    args, _ = encode.scene_args(settings, 1, 4)
    values = dict(zip(args[::2], args[1::2]))
    assert 1 <= int(values["-b:v"].rstrip("k")) <= 200_000
    assert 8000 <= int(values["-ar"]) <= 192_000 and 32 <= int(values["-b:a"].rstrip("k")) <= 512


@pytest.mark.parametrize("fps, base", [(0, 1), (24, 0), (10**9, 1), (24, 1e-9), ("x", 1), (-24, 1), (24, "nan")])
def test_an_absurd_frame_rate_fails_the_job_with_the_reason(fps, base):
    with pytest.raises(RenderError) as e:
        encode.fps_of({"fps": fps, "fps_base": base})
    assert e.value.deterministic and "frame rate" in e.value.message


def test_ntsc_rates_are_exact():
    assert encode.fps_of({"fps": 30, "fps_base": 1.001}) == "30000/1001"
    assert encode.fps_of({"fps": 24, "fps_base": 1.0}) == "24/1"


@pytest.mark.parametrize("name, expected", [
    ("-i x.mp4", "i_x.mp4"), ("../../etc/passwd.mp4", "etc_passwd.mp4"), (".hidden.mp4", "hidden.mp4"),
    ("-" * 50 + ".mp4", "0001-0004.mp4"), ("shot\n010.mp4", "shot_010.mp4"), ("x" * 300 + ".mp4", "x" * 100 + ".mp4"),
    ("", "0001-0004.mp4"), ("ok_0001-0004.mp4", "ok_0001-0004.mp4"),
])
def test_the_movies_name_is_a_plain_name_of_the_workers(name, expected):
    assert encode.safe_name(name, "0001-0004", ".mp4") == expected


def test_ffmpeg_reads_only_the_frames_and_writes_only_its_folder(tmp_path, scenes):
    """A real encode in the real sandbox, of a scene whose output path is hostile: the movie lands
    in the output folder under a plain name; nothing else is written; the worker's files are unseen."""
    require("ffmpeg")
    require_blender()
    box = sandbox.choose("required") if sandbox.probe() is None else pytest.skip("bwrap cannot run here")
    scene = scenes("--no-texture", "--format", "FFMPEG", "--frames", "1-3")
    inputs = tmp_path / "inputs" / "0"
    inputs.mkdir(parents=True)
    from PIL import Image
    for f in (1, 2, 3):
        Image.new("RGB", (48, 48), (f * 60, 0, 0)).save(inputs / f"{f:04d}.png")
    secret = tmp_path / "secret.txt"
    secret.write_text("the worker's token")
    out = tmp_path / "output"
    out.mkdir()
    info = probe_blender("blender", box)
    options = FinishOptions({"video": "scene"}, PartSpan(0, 1, 3, 1), [InputPart(PartSpan(0, 1, 3, 1), inputs)],
                            lambda: (scene.parent, scene), info, box, threading.Event(), tmp_path / "log")
    files = encode.finish(tmp_path / "inputs", out, options)
    assert [p.parent for p in files] == [out] and len(list(out.iterdir())) == 1
    assert not files[0].name.startswith(("-", "."))
    assert secret.read_text() == "the worker's token"
    # The command ffmpeg ran: file protocol only, and the sandbox bound only the work and output folders.
    cmd = box.command(["ffmpeg"], read_only=[tmp_path / "encode"], writable=[out])
    assert "--unshare-all" in cmd and str(secret) not in cmd


def test_a_finishing_parts_inputs_are_only_for_its_lease(http, tokens, scene_sha):
    submit(http, tokens.client, scene_sha, finish={"kind": "encode", "options": {"video": "preview"}})
    resp = http.post("/v1/workers", json={"blender_version": "3.4", "capabilities": ["encode"]},
                     headers=bearer(tokens.worker))
    wid = resp.get_json()["id"]
    while (part := claim(http, tokens.worker, wid))["kind"] == "render":
        assert put_result(http, tokens.worker, part).status_code == 200
    other = http.post("/v1/workers", json={"blender_version": "3.4", "capabilities": ["encode"]},
                      headers=bearer(tokens.worker)).get_json()["id"]
    path = f"/v1/parts/{part['id']}/inputs"
    with unchanged(http):
        # Another worker naming this lease's token, a wrong token, a client's token, no lease at all.
        expect_error(http.get(path, headers={**bearer(tokens.worker), "X-Lease-Token": part["token"],
                                             "X-Worker-Id": other}), 409, "stale_lease")
        expect_error(http.get(path + "/0", headers={**bearer(tokens.worker), **lease(part, "1-" + "0" * 32)}), 409)
        expect_error(http.get(path, headers={**bearer(tokens.client), **lease(part)}), 403)
        expect_error(http.get(path, headers=bearer(tokens.worker)), 400)  # no lease named
        for index in ("-1", "2", "99999999999999999999", "x"):
            expect_error(http.get(f"{path}/{index}", headers={**bearer(tokens.worker), **lease(part)}), 404)


def test_a_hostile_workers_movie_is_refused_past_its_bounds(http, tokens, scene_sha):
    """A zip bomb as the movie: refused by the ratio bound like any result (the size bound is in
    test_finishing.py), the attempt failed, nothing stored."""
    submit(http, tokens.client, scene_sha, finish={"kind": "encode"})
    wid = http.post("/v1/workers", json={"blender_version": "3.4", "capabilities": ["encode"]},
                    headers=bearer(tokens.worker)).get_json()["id"]
    while (part := claim(http, tokens.worker, wid))["kind"] == "render":
        assert put_result(http, tokens.worker, part).status_code == 200
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("movie.mp4", b"\0" * (64 * 1024 * 1024))
    err = expect_error(put_result(http, tokens.worker, part, buf.getvalue()), 413, "result_too_large")
    assert "zip bomb" in err["message"] or "more than" in err["message"]
