"""The storage contract (storage_contract.py) on Cloud Storage (the real client against
gcp-storage-emulator) and on the routed mix of a local folder and buckets; the local folder
alone runs it in unit/test_storage_local.py."""
from __future__ import annotations

import pytest

from framefarm.gateway.storage import LocalStorage, RoutedStorage, StorageError, open_storage
from storage_contract import StorageContract


class TestCloudStorage(StorageContract):
    @pytest.fixture(params=["gcs", "routed"])
    def store(self, request, tmp_path, gcs):
        if request.param == "gcs":
            return gcs.storage()
        # Scenes in a local folder, parts and archives in two places in the bucket.
        return open_storage(f"file://{tmp_path / 'storage'},parts={gcs.storage_url()},archives={gcs.storage_url()}")


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
