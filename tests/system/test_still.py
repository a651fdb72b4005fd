"""Split stills on a real farm: gunicorn, `framefarm worker`s with Debian's Blender 3.4 and
with the bpy 5.0 back end, the CLI.

A still split into pieces (bands of rows, worker/still_piece.py) and merged on a worker
(worker/still_merge.py) must equal Blender's own single render of that frame, pixel for
pixel: Cycles' pixels do not depend on their neighbours, the bands are joined in linear
float, and the view transform, dither and file format are applied once, to the whole frame
(docs/stills.md has the measurements). Checked for 8-bit PNG, 16-bit PNG at 50 % resolution
scale with an uneven band split, OpenEXR, a compositor that blurs across the bands, and
with a piece's worker killed midway, on a 3.4 farm; on a bpy 5.0 farm (whose compositor is
a node group) the same for a blurring compositor, and a denoised still, denoised once after
the merge, against Blender 5.0's own denoised render (close, not identical: measured), and
a hostile piece without the denoising passes refused by the merge.
A 3.4-only farm refuses a denoised still at submit. One farm per Blender, each with its own
redis-server, serves the module.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from farmtools import framefarm_cli, make_scene, require, require_blender, wait_for
from test_addon import launcher_for
from framefarm.common.frameset import PartSpan
from framefarm.gateway import keys
from framefarm.gateway.localfarm import RedisServer
from framefarm.worker.render import RenderError, probe_blender, render_frames
from framefarm.worker.still_merge import merge_still

from clustertools import Cluster, cluster_env, make_tokens

SIZE = 96
# Compares two images' pixels as Blender decodes them (16-bit PNG and OpenEXR included,
# which Pillow reads only in part): exact equality, else the largest difference.
_COMPARE = """
import array, json, sys, bpy
def pixels(path):
    image = bpy.data.images.load(path)
    values = array.array("f", bytes(4 * image.size[0] * image.size[1] * image.channels))
    image.pixels.foreach_get(values)
    return list(image.size), image.channels, image.is_float, values
a, b = (pixels(p) for p in sys.argv[sys.argv.index("--") + 1:])
diffs = [abs(x - y) for x, y in zip(a[3], b[3])]
print("COMPARE " + json.dumps({"a": a[:3], "b": b[:3], "equal": a == b, "max_diff": max(diffs, default=0.0),
      "rms": (sum(d * d for d in diffs) / max(1, len(diffs))) ** 0.5}))
"""
# Turns a scene of scripts/make_scene.py into a variant: settings given as JSON.
_VARIANT = """
import json, sys, bpy
opts = json.loads(sys.argv[sys.argv.index("--") + 1])
scene = bpy.context.scene
render, settings = scene.render, scene.render.image_settings
settings.file_format = opts.get("format", settings.file_format)
settings.color_depth = opts.get("depth", settings.color_depth)
render.resolution_percentage = opts.get("percent", 100)
render.resolution_y = opts.get("height", render.resolution_y)
scene.cycles.samples = opts.get("samples", scene.cycles.samples)
if opts.get("blur"):  # a compositor that mixes neighbouring pixels, across the bands' edges
    scene.use_nodes = True
    tree = scene.node_tree
    layers = next(node for node in tree.nodes if node.bl_idname == "CompositorNodeRLayers")
    composite = next(node for node in tree.nodes if node.bl_idname == "CompositorNodeComposite")
    blur = tree.nodes.new("CompositorNodeBlur")
    blur.size_x = blur.size_y = 6
    tree.links.new(layers.outputs["Image"], blur.inputs["Image"])
    tree.links.new(blur.outputs["Image"], composite.inputs["Image"])
    render.use_compositing = True
if opts.get("eevee"):
    render.engine = "BLENDER_EEVEE"
if "denoise" in opts:  # Cycles' own denoising (OpenImageDenoise: 3.4 knows no other on CPU), scene and view layer
    scene.cycles.use_denoising = opts["denoise"]
    for layer in scene.view_layers:
        layer.cycles.use_denoising = True
scene.frame_current = opts.get("current", scene.frame_current)
bpy.ops.wm.save_as_mainfile(filepath=opts["out"])
"""


def blender_script(script: str, *args: str, blend: Path | None = None) -> str:
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as fh:
        fh.write(script)
    proc = subprocess.run(["blender", "-b", "--factory-startup", *([str(blend)] if blend else []),
                           "--python-exit-code", "1", "--python", fh.name, "--", *args],
                          capture_output=True, text=True, timeout=180)
    Path(fh.name).unlink()
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


@pytest.fixture(scope="module")
def base_scene(tmp_path_factory) -> Path:
    require_blender()
    return make_scene(tmp_path_factory.mktemp("still") / "scene.blend", "--size", str(SIZE), "--samples", "8",
                      "--frames", "1-5")


def variant(base: Path, name: str, **opts) -> Path:
    out = base.parent / name / "scene.blend"
    out.parent.mkdir(exist_ok=True)
    blender_script(_VARIANT, json.dumps({**opts, "out": str(out)}), blend=base)
    return out


def single_render(scene: Path, frame: int, out: Path, blender: Path | None = None) -> Path:
    """Blender's own render of the frame, as F12 and save would give (compositing on), by
    Debian's Blender or `blender` (the bpy back end's launcher, which knows -a, not -f)."""
    out.mkdir(parents=True, exist_ok=True)
    frames = ["-s", str(frame), "-e", str(frame), "-a"] if blender else ["-f", str(frame)]
    proc = subprocess.run([str(blender or "blender"), "-b", "--factory-startup", str(scene), "-o", f"{out}/####",
                           "-x", "1", *frames], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    files = list(out.iterdir())
    assert len(files) == 1, files
    return files[0]


def compare(a: Path, b: Path) -> dict:
    out = blender_script(_COMPARE, str(a), str(b))
    return json.loads(next(line for line in out.splitlines() if line.startswith("COMPARE "))[8:])


@contextlib.contextmanager
def still_farm(root: Path, blender: str | None = None) -> Iterator[Cluster]:
    """Its own redis-server, a gateway and two workers of two slots (four pieces render at once),
    with `blender` (a path; None: Debian's)."""
    require("redis-server")
    server = RedisServer(root / "redis", root / "redis.log").start()
    c = Cluster(root, server, make_tokens(server.client()), cluster_env())
    try:
        c.add_gateway()
        for _ in range(2):
            c.add_worker(slots=2, **({"blender": blender} if blender else {}))
        c.wait_registered(2, timeout=120)
        yield c
    finally:
        c.stop()
        server.stop()


@pytest.fixture(scope="module")
def farm(tmp_path_factory, base_scene):
    with still_farm(tmp_path_factory.mktemp("still-farm")) as c:
        yield c


def submit_still(farm: Cluster, scene: Path, out: Path, *args: str, timeout: float = 300) -> dict:
    try:
        res = framefarm_cli("submit", str(scene), "--still", *args, "--wait", "--json", "--output", str(out),
                            env=farm.client_env(), timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the still did not finish within {timeout:.0f} s\n{farm.logs()}")
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:] + farm.logs()
    return json.loads(res.stdout)


@pytest.mark.parametrize("name, opts, ext", [
    ("png", {}, ".png"),
    ("png16-half", {"depth": "16", "percent": 50, "height": 74}, ".png"),  # 37 rows: bands of 9 and 10
    ("exr", {"format": "OPEN_EXR", "depth": "32"}, ".exr"),
    ("blur", {"blur": True}, ".png"),
])
def test_a_still_in_four_pieces_equals_the_single_render(farm, base_scene, tmp_path, name, opts, ext):
    scene = variant(base_scene, name, **opts)
    job = submit_still(farm, scene, tmp_path / "farm", "3", "--pieces", "4")
    assert job["status"] == "done" and job["still"] == {"frame": 3, "pieces": 4, "pieces_done": 4}
    got = sorted((tmp_path / "farm").iterdir())
    assert [p.name for p in got] == [f"0003{ext}"]  # the merged frame alone, no pieces
    result = compare(single_render(scene, 3, tmp_path / "local"), got[0])
    assert result["a"] == result["b"] and result["equal"], result


def test_the_frame_defaults_to_the_scenes_current_one(farm, base_scene, tmp_path):
    scene = variant(base_scene, "current", current=4)
    job = submit_still(farm, scene, tmp_path / "farm", "--pieces", "2")
    assert job["still"]["frame"] == 4
    assert [p.name for p in (tmp_path / "farm").iterdir()] == ["0004.png"]


@pytest.mark.parametrize("opts, args, words", [
    ({"eevee": True}, ["2"], "a split still needs Cycles"),
    ({}, ["9"], "frame 9 is outside the scene's frames 1-5"),
])
def test_what_cannot_be_split_fails_the_job_at_once_saying_why(farm, base_scene, tmp_path, opts, args, words):
    scene = variant(base_scene, f"refused-{len(args[0])}-{bool(opts)}", **opts)
    res = framefarm_cli("submit", str(scene), "--still", *args, "--pieces", "2", "--wait", "--json",
                        env=farm.client_env(), timeout=120)
    assert res.returncode != 0
    job = json.loads(res.stdout)
    assert job["status"] == "failed" and words in job["error"], job


def test_a_piece_of_the_wrong_size_fails_the_merge_naming_it(base_scene, tmp_path):
    """A hostile worker's piece that passed the gateway's checks (its frame, as OpenEXR) but is
    not the frame's size: the merge refuses it by number, as final (retrying cannot help)."""
    info = probe_blender("blender")
    small = variant(base_scene, "small", percent=50)
    pieces = {index: render_frames(info, scene, PartSpan(index, 1, 1, 1), tmp_path / f"piece-{index}",
                                   still_piece={"index": index, "of": 2, "frame": 1})[0]
              for index, scene in ((0, base_scene), (1, small))}
    with pytest.raises(RenderError) as refused:
        merge_still(info, base_scene, pieces, tmp_path / "merged", frame=1)
    assert f"piece 1's image is {SIZE // 2}x{SIZE // 2} pixels, not the frame's {SIZE}x{SIZE}" in refused.value.message
    assert refused.value.deterministic


def test_a_pieces_worker_killed_midway_still_gives_the_complete_image(farm, base_scene, tmp_path):
    scene = variant(base_scene, "slow", samples=400)  # pieces of a few seconds each
    # Eight pieces for five slots: the third worker, idle and long-polling, surely takes one.
    victim = farm.add_worker(slots=1)
    r = redis.Redis.from_url(farm.redis.url, decode_responses=True)
    victim_id = wait_for(lambda: next((wid for wid in r.zrange(keys.WORKERS, 0, -1)
                                       if r.hget(keys.worker(wid), "name") == victim.name), None), 60,
                         "the third worker to register")
    cli = subprocess.Popen([sys.executable, "-m", "framefarm.cli", "submit", str(scene), "--still", "2", "--pieces", "8", "--wait",
                            "--json", "--output", str(tmp_path / "farm")],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env={**os.environ, **farm.client_env()})
    try:
        wait_for(lambda: r.scard(keys.worker_parts(victim_id)), 120, "the third worker to take a piece")
        victim.signal(signal.SIGKILL)  # its lease runs out and another worker renders the piece
        out, err = cli.communicate(timeout=300)
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()
    assert cli.returncode == 0, out[-2000:] + err[-3000:]
    job = json.loads(out)
    assert job["status"] == "done"
    parts = json.loads(framefarm_cli("status", job["id"], "--json", env=farm.client_env()).stdout)
    assert parts["still"]["pieces_done"] == 8
    got = tmp_path / "farm" / "0002.png"
    result = compare(single_render(scene, 2, tmp_path / "local"), got)
    assert result["equal"], result


def test_a_denoised_still_is_refused_at_submit_on_a_farm_without_a_denoiser(farm, base_scene, tmp_path):
    """No worker of a 3.4 farm can denoise a merged still (no OpenImageDenoise): the submission
    is refused, 409 no_denoiser, before any piece renders; no job is left behind."""
    scene = variant(base_scene, "denoised-34", denoise=True)
    r = redis.Redis.from_url(farm.redis.url, decode_responses=True)
    jobs_before = r.zcard(keys.ALL_JOBS)
    res = framefarm_cli("submit", str(scene), "--still", "2", "--pieces", "2", env=farm.client_env(), timeout=120)
    assert res.returncode != 0
    out = res.stdout + res.stderr
    assert "no live worker of this farm that can open it can denoise a merged still" in out, out
    assert "Traceback" not in out
    assert r.zcard(keys.ALL_JOBS) == jobs_before


def test_a_denoising_piece_sent_without_denoise_refuses_before_rendering(base_scene, tmp_path):
    """An API client that sends a denoising scene's still without "denoise": its first piece
    refuses, as final, before rendering (the farm never looked for a worker that denoises)."""
    info = probe_blender("blender")
    scene = variant(base_scene, "denoised-raw", denoise=True)
    with pytest.raises(RenderError) as refused:
        render_frames(info, scene, PartSpan(0, 1, 1, 1), tmp_path / "piece", still_piece={"index": 0, "of": 2, "frame": 1})
    assert "this still was submitted without \"denoise\": true" in refused.value.message
    assert refused.value.deterministic


@pytest.fixture(scope="module")
def launcher50(tmp_path_factory) -> Path:
    return launcher_for("5.0", tmp_path_factory.mktemp("bpy50"))


@pytest.fixture(scope="module")
def farm50(tmp_path_factory, base_scene, launcher50):
    """The same farm on the bpy 5.0 back end, which has OpenImageDenoise."""
    with still_farm(tmp_path_factory.mktemp("still-farm50"), str(launcher50)) as c:
        yield c


def test_on_blender_5_a_still_in_four_pieces_equals_the_single_render(farm50, launcher50, base_scene, tmp_path):
    """Blender 5.0's compositor is a node group: the merge rewires the scene's own (a blur across
    the bands' edges, saved by 3.4 and versioned by 5.0) and the frame is Blender's, pixel for pixel."""
    scene = variant(base_scene, "blur50", blur=True)
    job = submit_still(farm50, scene, tmp_path / "farm", "3", "--pieces", "4")
    assert job["status"] == "done" and job["still"] == {"frame": 3, "pieces": 4, "pieces_done": 4}
    result = compare(single_render(scene, 3, tmp_path / "local", launcher50), tmp_path / "farm" / "0003.png")
    assert result["a"] == result["b"] and result["equal"], result


def test_on_blender_5_a_denoised_still_is_denoised_once_after_the_merge(farm50, launcher50, base_scene, tmp_path):
    """Denoised once, on the joined frame, with the pieces' albedo and normal: as close to
    Blender 5.0's own denoised render as one 8-bit level (docs/stills.md has the figures), and
    far closer to it than the undenoised render is, so the denoising is the scene's own."""
    scene = variant(base_scene, "denoised50", denoise=True)
    job = submit_still(farm50, scene, tmp_path / "farm", "3", "--pieces", "4")
    assert job["status"] == "done" and job["still"] == {"frame": 3, "pieces": 4, "pieces_done": 4, "denoise": True}
    got = tmp_path / "farm" / "0003.png"
    single = single_render(scene, 3, tmp_path / "local", launcher50)
    noisy = single_render(variant(base_scene, "noisy50", denoise=False), 3, tmp_path / "noisy", launcher50)
    merged, undenoised = compare(single, got), compare(single, noisy)
    assert merged["a"] == merged["b"], merged
    assert merged["max_diff"] <= 1.5 / 255 and merged["rms"] < 1e-4, merged
    assert merged["rms"] * 20 < undenoised["rms"], (merged, undenoised)


def test_a_denoised_merge_refuses_a_piece_without_the_denoising_passes(launcher50, base_scene, tmp_path):
    """A hostile or broken worker's piece that passed the gateway's checks (the frame, as
    OpenEXR) but carries no albedo and normal: the merge refuses it by number, as final."""
    info = probe_blender(str(launcher50))
    scene = variant(base_scene, "denoised-hostile", denoise=True)
    pieces = {index: render_frames(info, source, PartSpan(index, 1, 1, 1), tmp_path / f"piece-{index}",
                                   still_piece={"index": index, "of": 2, "frame": 1, **extra})[0]
              for index, source, extra in ((0, scene, {"denoise": True}), (1, base_scene, {}))}  # 1: plain RGBA
    with pytest.raises(RenderError) as refused:
        merge_still(info, scene, pieces, tmp_path / "merged", frame=1)
    assert "piece 1's image has no single Combined.R channel" in refused.value.message
    assert refused.value.deterministic
