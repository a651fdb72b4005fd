"""The worker's scene cache checks itself (issue 9, item 1) and cleans up after a failed
build (item 12): on the real file system, with fetches that count what they download."""
from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import pytest

from framefarm.worker.scene_cache import CacheError, SceneCache

TEX, BLEND = b"green texture bytes", b"BLENDER-v304 scene bytes"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Store:
    """The farm's side of a fetch: bytes by hash, and which hashes were downloaded."""

    def __init__(self, *blobs: bytes) -> None:
        self.blobs = {sha(b): b for b in blobs}
        self.fetched: list[str] = []

    def fetch(self, digest: str, dest: Path) -> None:
        self.fetched.append(digest)
        dest.write_bytes(self.blobs[digest])


def leftovers(cache: SceneCache) -> list[str]:
    return sorted(p.name for p in cache.scenes.iterdir() if p.name.startswith("."))


def test_a_cached_file_is_fetched_once_and_shared(tmp_path):
    cache, store = SceneCache(tmp_path), Store(TEX, BLEND)
    files = {"scene.blend": sha(BLEND), "tex.png": sha(TEX)}
    one = cache.scene("job-1", files, store.fetch)
    two = cache.scene("job-2", files, store.fetch)
    assert sorted(store.fetched) == sorted(files.values())
    assert os.stat(one / "tex.png").st_ino == os.stat(two / "tex.png").st_ino == os.stat(cache.files / sha(TEX)).st_ino
    assert cache.scene("job-1", files, store.fetch) == one and len(store.fetched) == 2


def test_a_file_changed_through_a_scene_folder_is_fetched_again(tmp_path):
    """What a scene with write access would do: write through its hard link into the cache."""
    cache, store = SceneCache(tmp_path), Store(TEX, BLEND)
    files = {"scene.blend": sha(BLEND), "tex_0001.png": sha(TEX)}
    attacker = cache.scene("attacker", files, store.fetch)
    (attacker / "tex_0001.png").write_bytes(b"red!")  # same size or not, the ctime moves
    assert (cache.files / sha(TEX)).read_bytes() == b"red!"

    victim = cache.scene("victim", {"tex.png": sha(TEX)}, store.fetch)
    assert (victim / "tex.png").read_bytes() == TEX
    assert store.fetched.count(sha(TEX)) == 2
    # The attacker's own folder, handed out again, is rebuilt from the right bytes too.
    again = cache.scene("attacker", files, store.fetch)
    assert (again / "tex_0001.png").read_bytes() == TEX and store.fetched.count(sha(TEX)) == 2


def test_same_bytes_rewritten_are_kept_after_one_check(tmp_path):
    """A touched file whose bytes still hash right is hashed once more and kept, not fetched."""
    cache, store = SceneCache(tmp_path), Store(TEX)
    cache.scene("a", {"tex.png": sha(TEX)}, store.fetch)
    (cache.files / sha(TEX)).chmod(0o644)  # changes the ctime only
    cache.scene("b", {"tex.png": sha(TEX)}, store.fetch)
    assert store.fetched == [sha(TEX)]


def test_a_name_too_long_for_the_disk_fails_clearly_and_leaves_nothing(tmp_path):
    cache, store = SceneCache(tmp_path), Store(TEX, BLEND)
    name = "t" * 300 + ".png"
    with pytest.raises(CacheError) as caught:
        cache.scene("job", {"scene.blend": sha(BLEND), name: sha(TEX)}, store.fetch)
    assert caught.value.deterministic
    assert "is too long for this worker's file system" in str(caught.value)
    assert f"({len(name)} characters)" in str(caught.value) and name not in str(caught.value)
    assert leftovers(cache) == [] and not (cache.scenes / "job").exists()


def test_a_path_out_of_the_scene_folder_is_refused_and_leaves_nothing(tmp_path):
    cache, store = SceneCache(tmp_path), Store(TEX)
    with pytest.raises(CacheError) as caught:
        cache.scene("job", {"../../escape.png": sha(TEX)}, store.fetch)
    assert caught.value.deterministic and "outside the scene folder" in str(caught.value)
    assert leftovers(cache) == [] and not (tmp_path / "escape.png").exists()


def test_a_failed_download_leaves_nothing_and_may_be_retried(tmp_path):
    cache = SceneCache(tmp_path)

    def broken(digest: str, dest: Path) -> None:
        dest.write_bytes(b"not what was asked for")

    with pytest.raises(CacheError) as caught:
        cache.scene("job", {"tex.png": sha(TEX)}, broken)
    assert not caught.value.deterministic and "hashes to" in str(caught.value)
    assert leftovers(cache) == [] and list(cache.files.iterdir()) == []


def test_scenes_past_the_kept_number_evict_the_oldest_without_hanging(tmp_path):
    """The ninth scene (keep_scenes + 1) evicts the first while the cache holds its lock: a plain
    Lock taken again there hung the worker for good (found by test_real_world_scenes.py's farm)."""
    cache, store = SceneCache(tmp_path, keep_scenes=2), Store(TEX, BLEND)
    files = {"scene.blend": sha(BLEND), "tex.png": sha(TEX)}
    built: list[Path] = []
    worker = threading.Thread(target=lambda: built.extend(cache.scene(f"job-{i}", files, store.fetch)
                                                          for i in range(4)), daemon=True)
    worker.start()
    worker.join(timeout=30)
    assert not worker.is_alive(), "the cache hung evicting a scene"
    kept = sorted(p.name for p in cache.scenes.iterdir() if not p.name.startswith("."))
    assert len(built) == 4 and len(kept) == 2 and "job-0" not in kept
