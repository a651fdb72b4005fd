"""The storage contract (storage_contract.py) on the local folder, the default back end;
Cloud Storage runs the same contract against the emulator in system/test_storage.py."""
from __future__ import annotations

from pathlib import Path

import pytest

from framefarm.gateway.storage import LocalStorage
from storage_contract import StorageContract, read_all, write


class TestLocalStorage(StorageContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> LocalStorage:
        return LocalStorage(tmp_path / "storage")


def test_promote_keeps_the_bytes_it_verified_even_if_the_upload_is_written_again(tmp_path):
    """Local folder only: the emulator ignores rewrite's sourceGeneration (Cloud Storage
    honours it, and GCSStorage.promote rewrites the generation it read)."""
    store = LocalStorage(tmp_path / "storage")
    write(store, "files/incoming/x-1", b"checked")

    def verify_then_overwrite(fh) -> None:
        assert fh.read() == b"checked"
        write(store, "files/incoming/x-1", b"swapped after the check")

    assert store.promote("files/incoming/x-1", "files/x", verify_then_overwrite)
    assert read_all(store, "files/x") == b"checked"
    assert read_all(store, "files/incoming/x-1") == b"swapped after the check"
