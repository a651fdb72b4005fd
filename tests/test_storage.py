"""One storage contract, run against every back end: the local folder and Cloud Storage
(the real client against gcp-storage-emulator). The gateway only ever uses this
interface, so a back end that passes here can hold a farm's files.
"""
from __future__ import annotations

import hashlib
import random
import time
import tracemalloc

import pytest

from framefarm.gateway.gcs_storage import CHUNK
from framefarm.gateway.storage import LocalStorage, RoutedStorage, StorageError, open_storage


@pytest.fixture(params=["local", "gcs", "routed"])
def store(request, tmp_path):
    if request.param == "local":
        return LocalStorage(tmp_path / "storage")
    gcs = request.getfixturevalue("gcs")
    if request.param == "gcs":
        return gcs.storage()
    # Scenes in a local folder, parts and archives in two places in the bucket.
    return open_storage(f"file://{tmp_path / 'storage'},parts={gcs.storage_url()},archives={gcs.storage_url()}")


def blocks(total: int, block: int = 1024 * 1024):
    """Deterministic random bytes, made block by block (never whole)."""
    for n in range(0, total, block):
        yield random.Random(n).randbytes(min(block, total - n))


def read_all(store, key: str) -> bytes:
    with store.open_read(key) as fh:
        return fh.read()


def write(store, key: str, data: bytes) -> None:
    with store.writer(key) as out:
        out.write(data)


def test_a_missing_object_is_absent_everywhere(store):
    assert not store.exists("files/nothing")
    assert store.size("files/nothing") is None
    with pytest.raises(StorageError):
        store.open_read("files/nothing")
    store.delete("files/nothing")  # deleting what is not there is not an error
    assert list(store.list_prefix("files")) == []


def test_written_objects_read_back_and_are_listed(store):
    with store.writer("parts/j1/0-abc.zip") as out:
        for piece in (b"first ", b"", b"second"):
            out.write(piece)
    write(store, "files/empty", b"")
    assert store.exists("parts/j1/0-abc.zip")
    assert store.size("parts/j1/0-abc.zip") == 12
    assert read_all(store, "parts/j1/0-abc.zip") == b"first second"
    assert store.size("files/empty") == 0 and read_all(store, "files/empty") == b""
    listed = {o.key: o for o in store.list_prefix("parts")}
    assert list(listed) == ["parts/j1/0-abc.zip"]
    assert listed["parts/j1/0-abc.zip"].size == 12
    assert abs(listed["parts/j1/0-abc.zip"].updated - time.time()) < 120


def test_an_overwrite_replaces_the_object(store):
    write(store, "archives/j.zip", b"old")
    write(store, "archives/j.zip", b"new and longer")
    assert read_all(store, "archives/j.zip") == b"new and longer"


@pytest.mark.parametrize("size", [10, CHUNK + 1024], ids=["small", "past-one-chunk"])
def test_a_writer_that_raises_leaves_nothing(store, size):
    """Past one chunk, the GCS writer has already sent data to a resumable upload:
    cancelling it must still leave nothing under the key."""
    with pytest.raises(RuntimeError, match="boom"):
        with store.writer("files/half") as out:
            for block in blocks(size):
                out.write(block)
            raise RuntimeError("boom")
    assert not store.exists("files/half")
    assert list(store.list_prefix("files")) == []

    write(store, "files/kept", b"the first version")
    with pytest.raises(RuntimeError):
        with store.writer("files/kept") as out:
            out.write(b"a replacement cut short")
            raise RuntimeError("boom")
    assert read_all(store, "files/kept") == b"the first version"


def test_delete_and_delete_prefix_touch_only_their_keys(store):
    for key in ("parts/j1/0-a.zip", "parts/j1/1-b.zip", "parts/j10/0-c.zip", "files/f"):
        write(store, key, key.encode())
    store.delete("files/f")
    assert not store.exists("files/f")
    store.delete_prefix("parts/j1")
    assert sorted(o.key for o in store.list_prefix("parts")) == ["parts/j10/0-c.zip"]
    store.delete_prefix("parts/nothing")


@pytest.mark.parametrize("key", ["", "/abs", "../up", "a/../b", "a//b", "a b", "files/x/", "ä"])
def test_keys_outside_the_contract_are_refused(store, key):
    with pytest.raises(StorageError):
        store.exists(key)
    with pytest.raises(StorageError):
        with store.writer(key) as out:
            out.write(b"x")
    with pytest.raises(StorageError):
        store.open_read(key)
    with pytest.raises(StorageError):
        store.delete(key)


def test_a_large_object_streams_both_ways_in_bounded_memory(store):
    """64 MiB in and out; the process never holds more than a few chunks of it (GCS: 8 MiB)."""
    size = 64 * 1024 * 1024
    want = hashlib.sha256()
    tracemalloc.start()
    try:
        with store.writer("archives/big.zip") as out:
            for block in blocks(size):
                want.update(block)
                out.write(block)
        got = hashlib.sha256()
        with store.open_read("archives/big.zip") as fh:
            while block := fh.read(1024 * 1024):
                got.update(block)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert store.size("archives/big.zip") == size
    assert got.hexdigest() == want.hexdigest()
    assert peak < 4 * CHUNK, f"peak {peak / 2**20:.1f} MiB for a {size / 2**20:.0f} MiB object"


def test_ping_and_signing(store):
    store.ping()
    url = store.signed_url("files/any", 60)
    if isinstance(store, RoutedStorage):  # each kind signs (or not) where it is kept
        assert url is None
        url = store.signed_url("archives/j.zip", 60)
    if isinstance(store, LocalStorage):
        assert url is None  # the gateway streams and signs its own links
    else:
        assert "X-Goog-Signature=" in url and "X-Goog-Expires=60" in url


def test_open_storage_picks_the_back_end(tmp_path, gcs):
    assert isinstance(open_storage(f"file://{tmp_path}/a"), LocalStorage)
    assert isinstance(open_storage(str(tmp_path / "b")), LocalStorage)
    s = open_storage("gs://framefarm-test/some/prefix/")
    assert (s.bucket.name, s.prefix) == ("framefarm-test", "some/prefix")
    routed = open_storage(f"gs://framefarm-test/main, archives={tmp_path}/results")
    assert isinstance(routed, RoutedStorage) and routed.default.prefix == "main"
    assert routed._for("archives/j.zip").root == tmp_path / "results"
    assert routed._for("files/abc") is routed.default
    for bad in ("gs://", "gs://bucket/p?x=1", "s3://bucket/p", f"archives={tmp_path}/a,parts={tmp_path}/b",
                f"{tmp_path}/a,{tmp_path}/b", f"{tmp_path}/a,archives={tmp_path}/b,archives={tmp_path}/c",
                f"{tmp_path}/a,Parts={tmp_path}/b"):
        with pytest.raises(StorageError):
            open_storage(bad)
