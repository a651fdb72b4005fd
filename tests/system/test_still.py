"""Split stills on a real farm: gunicorn, `framefarm worker`s with Debian's Blender 3.4, the CLI.

A still split into pieces (bands of rows, worker/still_piece.py) and merged on a worker
(worker/still_merge.py) must equal Blender's own single render of that frame, pixel for
pixel: Cycles' pixels do not depend on their neighbours, the bands are joined in linear
float, and the view transform, dither and file format are applied once, to the whole frame
(docs/stills.md has the measurements). Checked for 8-bit PNG, 16-bit PNG at 50 % resolution
scale with an uneven band split, OpenEXR, a compositor that blurs across the bands, and
with a piece's worker killed midway. One farm (its own redis-server) serves the module.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import redis

from farmtools import framefarm_cli, make_scene, require, require_blender, wait_for
from framefarm.common.frameset import PartSpan
from framefarm.gateway import keys
from framefarm.gateway.localfarm import RedisServer
from framefarm.worker.render import RenderError, probe_blender, render_frames
from framefarm.worker.still_merge import merge_still

from conftest import Cluster, _cluster_env, _make_tokens

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
print("COMPARE " + json.dumps({"a": a[:3], "b": b[:3], "equal": a == b,
      "max_diff": max((abs(x - y) for x, y in zip(a[3], b[3])), default=0.0)}))
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


def single_render(scene: Path, frame: int, out: Path) -> Path:
    """Blender's own render of the frame, as F12 and save would give (compositing on)."""
    out.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["blender", "-b", "--factory-startup", str(scene), "-o", f"{out}/####", "-x", "1",
                           "-f", str(frame)], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:]
    files = list(out.iterdir())
    assert len(files) == 1, files
    return files[0]


def compare(a: Path, b: Path) -> dict:
    out = blender_script(_COMPARE, str(a), str(b))
    return json.loads(next(line for line in out.splitlines() if line.startswith("COMPARE "))[8:])


@pytest.fixture(scope="module")
def farm(tmp_path_factory, base_scene):
    """Two workers of two slots: four pieces render at once."""
    require("redis-server")
    root = tmp_path_factory.mktemp("still-farm")
    server = RedisServer(root / "redis", root / "redis.log").start()
    c = Cluster(root, server, _make_tokens(server.client()), _cluster_env())
    try:
        c.add_gateway()
        c.add_worker(slots=2)
        c.add_worker(slots=2)
        c.wait_registered(2)
        yield c
    finally:
        c.stop()
        server.stop()


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
