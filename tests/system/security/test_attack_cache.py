"""Issue 9, item 1: one tenant's scene must not change another tenant's frames.

The attack, as reproduced against a live farm: B's scene uses `tex.png` (green). A submits a
scene whose compositor File Output node writes `//tex_####`, with a manifest entry
`tex_0001.png` holding the same bytes as B's texture, so on the worker A's `tex_0001.png`
is a hard link to the cached file B's scenes use; rendering frame 1 writes red into it.
Wanted: B's next job still renders green and the cache holds B's bytes. With the sandbox
(the default) the scene folder is read-only to Blender and the write fails; with
`--sandbox off` the write lands, and the cache, which verifies itself, notices the changed
file and fetches it again.
"""
from __future__ import annotations

import pytest

from farmtools import require, sha256
from sandboxtools import GREEN, RED, attack_scene, farm_api, finished, png, rendered, submit


@pytest.mark.parametrize("mode", ["auto", "off"])
def test_a_compositor_cannot_overwrite_a_cached_file(cluster, tmp_path, mode):
    if mode == "auto":
        require("bwrap")
    cluster.add_gateway()
    cluster.add_worker(extra=["--sandbox", mode])
    cluster.wait_registered(1)
    victim, attacker = farm_api(cluster, cluster.tokens.client), farm_api(cluster, cluster.tokens.client2)

    texture = tmp_path / "b" / "tex.png"
    original = png(texture, GREEN)
    scene = attack_scene(tmp_path / "b" / "scene.blend", "--image", "//tex.png")
    b_files = {"scene.blend": scene, "tex.png": texture}
    assert rendered(victim, submit(victim, b_files, "scene.blend"), tmp_path / "out") == GREEN
    cached = cluster.root / "worker-0" / "cache" / "files" / sha256(original)
    assert cached.read_bytes() == original
    before = cached.stat()

    writer = attack_scene(tmp_path / "a" / "scene.blend", "--colour", "1,0,0", "--file-output", "//tex_####")
    a_files = {"scene.blend": writer, "tex_0001.png": texture}  # the same bytes: the same cached file
    assert rendered(attacker, submit(attacker, a_files, "scene.blend"), tmp_path / "out") == RED
    if mode == "auto":
        # Nothing reached the cached file: same bytes, same inode, never touched.
        after = cached.stat()
        assert cached.read_bytes() == original
        assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    else:
        # Without a sandbox the attack does write through the link (so the test can tell) ...
        assert cached.read_bytes() != original

    # ... and B's next job renders green either way, from the right bytes.
    assert rendered(victim, submit(victim, b_files, "scene.blend"), tmp_path / "out") == GREEN
    assert cached.read_bytes() == original
    log = (cluster.root / "worker-0.log").read_text()
    assert ("changed since it was verified: dropped" in log) == (mode == "off")


def test_a_scene_folder_that_cannot_be_built_fails_the_job_at_once_and_leaves_nothing(cluster, tmp_path):
    """Issue 9, item 12 (the worker's half): a manifest the gateway accepts but no worker can lay
    out (`tex.png` is a file and a folder at once) fails its job with a readable reason at the
    first try, instead of blocking workers and leaving the job running, and no half-built
    scene folder is left behind."""
    cluster.add_gateway()
    cluster.add_worker()
    cluster.wait_registered(1)
    api = farm_api(cluster, cluster.tokens.client)
    texture = tmp_path / "tex.png"
    png(texture, GREEN)
    scene = attack_scene(tmp_path / "scene.blend", "--image", "//tex.png")
    job_id = submit(api, {"scene.blend": scene, "tex.png": texture, "tex.png/inner.png": texture}, "scene.blend")
    job = finished(api, job_id, 60)
    assert job["status"] == "failed", job
    assert job["error"] is not None and job["error"].startswith("the scene could not be made ready: cannot place "
                                                                 "the scene's file tex.png"), job["error"]
    assert job["part_list"][0]["attempts"] == 1
    scenes = cluster.root / "worker-0" / "cache" / "scenes"
    assert [p.name for p in scenes.iterdir()] == []
