"""One storage contract for every back end (a class whose tests a back end's test
class inherits, with its own `store` fixture): the local folder runs it in
unit/test_storage_local.py, Cloud Storage and the routed mix in system/test_storage.py.
The gateway only ever uses this interface, so a back end that passes can hold a farm's files.
"""
from __future__ import annotations

import hashlib
import random
import time
import tracemalloc
import urllib.request

import pytest

from framefarm.gateway.gcs_storage import CHUNK
from framefarm.gateway.storage import LocalStorage, ObjectMissing, RoutedStorage, StorageError


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


def sha_check(want: str):
    """A `verify` for promote: the bytes must hash to `want`."""
    def verify(fh) -> None:
        digest = hashlib.sha256()
        while block := fh.read(1024 * 1024):
            digest.update(block)
        if digest.hexdigest() != want:
            raise ValueError("hash mismatch")
    return verify


class StorageContract:
    """What every back end must do; subclasses provide the `store` fixture."""

    def test_a_missing_object_is_absent_everywhere(self, store):
        assert not store.exists("files/nothing")
        assert store.size("files/nothing") is None
        with pytest.raises(StorageError):
            store.open_read("files/nothing")
        store.delete("files/nothing")  # deleting what is not there is not an error
        assert list(store.list_prefix("files")) == []

    def test_written_objects_read_back_and_are_listed(self, store):
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

    def test_an_overwrite_replaces_the_object(self, store):
        write(store, "archives/j.zip", b"old")
        write(store, "archives/j.zip", b"new and longer")
        assert read_all(store, "archives/j.zip") == b"new and longer"

    @pytest.mark.parametrize("size", [10, CHUNK + 1024], ids=["small", "past-one-chunk"])
    def test_a_writer_that_raises_leaves_nothing(self, store, size):
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

    def test_delete_and_delete_prefix_touch_only_their_keys(self, store):
        for key in ("parts/j1/0-a.zip", "parts/j1/1-b.zip", "parts/j10/0-c.zip", "files/f"):
            write(store, key, key.encode())
        store.delete("files/f")
        assert not store.exists("files/f")
        store.delete_prefix("parts/j1")
        assert sorted(o.key for o in store.list_prefix("parts")) == ["parts/j10/0-c.zip"]
        store.delete_prefix("parts/nothing")

    @pytest.mark.parametrize("key", ["", "/abs", "../up", "a/../b", "a//b", "a b", "files/x/", "ä"])
    def test_keys_outside_the_contract_are_refused(self, store, key):
        with pytest.raises(StorageError):
            store.exists(key)
        with pytest.raises(StorageError):
            with store.writer(key) as out:
                out.write(b"x")
        with pytest.raises(StorageError):
            store.open_read(key)
        with pytest.raises(StorageError):
            store.delete(key)

    def test_a_large_object_streams_both_ways_in_bounded_memory(self, store):
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

    def test_ping_and_signing(self, store):
        store.ping()
        url = store.signed_url("files/any", 60)
        if isinstance(store, RoutedStorage):  # each kind signs (or not) where it is kept
            assert url is None
            url = store.signed_url("archives/j.zip", 60)
        if isinstance(store, LocalStorage):
            assert url is None  # the gateway streams and signs its own links
        else:
            assert "X-Goog-Signature=" in url and "X-Goog-Expires=60" in url

    def test_promote_moves_an_object_only_once_it_is_verified(self, store):
        data = b"scene bytes" * 1000
        write(store, "parts/j/incoming/0-1-a.zip", data)
        assert store.promote("parts/j/incoming/0-1-a.zip", "parts/j/0-1.zip", sha_check(hashlib.sha256(data).hexdigest()))
        assert read_all(store, "parts/j/0-1.zip") == data
        assert not store.exists("parts/j/incoming/0-1-a.zip")
        assert [o.key for o in store.list_prefix("parts")] == ["parts/j/0-1.zip"]

        write(store, "parts/j/incoming/0-1-b.zip", b"forged")
        with pytest.raises(ValueError):
            store.promote("parts/j/incoming/0-1-b.zip", "parts/j/0-2.zip", sha_check(hashlib.sha256(data).hexdigest()))
        assert not store.exists("parts/j/0-2.zip")
        assert read_all(store, "parts/j/incoming/0-1-b.zip") == b"forged"  # left for the caller to judge

        # An object already under the final key is kept, not replaced under its readers.
        write(store, "parts/j/incoming/0-1-c.zip", data)
        assert store.promote("parts/j/incoming/0-1-c.zip", "parts/j/0-1.zip", sha_check(hashlib.sha256(data).hexdigest())) \
            is False
        assert not store.exists("parts/j/incoming/0-1-c.zip") and read_all(store, "parts/j/0-1.zip") == data

        with pytest.raises(ObjectMissing):
            store.promote("parts/j/incoming/none.zip", "parts/j/0-3.zip", sha_check("0" * 64))

    def test_an_upload_url_takes_the_object_straight_to_storage(self, store):
        url = store.upload_url("parts/j/incoming/up.zip", 5)
        if isinstance(store, LocalStorage) or url is None:
            assert isinstance(store, (LocalStorage, RoutedStorage)) and store.upload_url("files/x", 5) is None
            return  # the gateway streams uploads into a local folder
        assert "upload_id=" in url
        with urllib.request.urlopen(urllib.request.Request(url, data=b"hello", method="PUT"), timeout=10) as resp:
            assert resp.status in (200, 201)
        assert read_all(store, "parts/j/incoming/up.zip") == b"hello"
