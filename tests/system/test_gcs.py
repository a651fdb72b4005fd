"""Cloud Storage specifics: V4 signed URLs, and a whole job through gunicorn gateways and a
worker with GCS as the farm's storage (the real client against gcp-storage-emulator).

The emulator serves signed URLs but does not check their signatures, so the signature is
checked here, with the public half of the test's own service-account key, by rebuilding
the V4 string-to-sign as Cloud Storage does; the download through the URL is then real.
"""
from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
import urllib.request
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from farmtools import check_frames, framefarm_cli


def verify_v4_signature(url: str, key_file, method: str = "GET") -> dict[str, str]:
    """Raise unless `url` carries a valid GOOG4-RSA-SHA256 signature by the key in `key_file`;
    returns its query parameters."""
    parts = urlsplit(url)
    pairs = parts.query.split("&")
    params = {k: v[0] for k, v in parse_qs(parts.query).items()}
    canonical_query = "&".join(sorted(p for p in pairs if not p.startswith("X-Goog-Signature=")))
    canonical_request = "\n".join([method, parts.path, canonical_query, f"host:{parts.netloc}\n",
                                   params["X-Goog-SignedHeaders"], "UNSIGNED-PAYLOAD"])
    scope = params["X-Goog-Credential"].split("/", 1)[1]
    string_to_sign = "\n".join([params["X-Goog-Algorithm"], params["X-Goog-Date"], scope,
                                hashlib.sha256(canonical_request.encode()).hexdigest()])
    private = serialization.load_pem_private_key(json.loads(key_file.read_text())["private_key"].encode(), None)
    private.public_key().verify(bytes.fromhex(params["X-Goog-Signature"]), string_to_sign.encode(),
                                padding.PKCS1v15(), hashes.SHA256())
    return params


def test_a_signed_download_url_is_v4_expires_and_serves_the_object(gcs):
    store = gcs.storage()
    data = b"frames" * 50_000
    with store.writer("archives/abc.zip") as out:
        out.write(data)
    url = store.signed_url("archives/abc.zip", 900, filename="shot-abc.zip")
    assert url.startswith(gcs.url + f"/{store.bucket.name}/{store.prefix}/archives/abc.zip?")
    params = verify_v4_signature(url, gcs.key_file)
    assert params["X-Goog-Algorithm"] == "GOOG4-RSA-SHA256" and params["X-Goog-Expires"] == "900"
    assert params["X-Goog-Credential"].startswith("framefarm-test@framefarm-test.iam.gserviceaccount.com/")

    with pytest.raises(InvalidSignature):  # the signature covers the object and every parameter
        verify_v4_signature(url.replace("archives/abc.zip", "archives/abd.zip"), gcs.key_file)
    with pytest.raises(InvalidSignature):
        verify_v4_signature(url.replace("X-Goog-Expires=900", "X-Goog-Expires=901"), gcs.key_file)

    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.read() == data
        assert resp.headers["Content-Disposition"] == 'attachment; filename="shot-abc.zip"'


def test_without_a_key_to_sign_with_downloads_stream_through_the_gateway(gcs, monkeypatch):
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS")
    assert gcs.storage().signed_url("archives/abc.zip", 60) is None


def test_a_job_renders_with_gcs_storage_and_downloads_through_a_signed_url(cluster, gcs, scenes, tmp_path):
    scene = scenes("--animated", "--size", "48")
    store = gcs.storage()
    cluster.env.update(gcs.client_env(), FRAMEFARM_STORAGE=f"gs://{store.bucket.name}/{store.prefix}")
    gateway = cluster.add_gateway()
    # Results this small would go in their result request (common/api.py INLINE_RESULT_BYTES):
    # the worker sends them to upload URLs instead, the path of frames of a real size.
    cluster.add_worker(env={"FRAMEFARM_INLINE_RESULT_BYTES": "0"})
    out = tmp_path / "frames"
    res = framefarm_cli("submit", str(scene), "--frames", "1-3", "--chunk", "2", "--wait",
                        "--output", str(out), "--json", env=cluster.client_env())
    assert res.returncode == 0, res.stderr + cluster.logs()
    job = json.loads(res.stdout)
    assert job["status"] == "done" and job["parts"]["total"] == 2
    check_frames(out, [1, 2, 3], (48, 48))

    # Everything lives in the bucket: the scene, the archive; no part result is left.
    assert {o.key.split("/")[0] for o in store.list_prefix("files")} == {"files"}
    assert list(store.list_prefix("parts")) == []
    assert store.exists(f"archives/{job['id']}.zip")
    assert not (cluster.root / "storage").exists()

    # The link clients get is the storage's own signed URL: the zip never passed a gateway.
    link = job["download_url"]
    verify_v4_signature(link, gcs.key_file)
    assert unquote(urlsplit(link).path).endswith(f"/archives/{job['id']}.zip")
    log = gateway.log_path.read_text()
    assert f'"GET /v1/jobs/{job["id"]}/archive" 302' in log and "/v1/download/" not in log

    # Nor did the scene or the frames: the client sent the scene files to upload URLs and the
    # gateway committed them; the worker fetched them from signed URLs and sent each part's
    # frames to an upload URL. No request that carries file bytes reached the gateway.
    requests = re.findall(r'"([A-Z]+) (/\S*)" (\d{3})', log)
    assert not [r for r in requests if r[0] == "PUT"], "a file was streamed through the gateway"
    assert not [r for r in requests if re.fullmatch(r"/v1/parts/[^/]+/files/\w+", r[1])]
    scene_files = {o.key.rsplit("/", 1)[1] for o in store.list_prefix("files")}
    commits = {r[1].split("/")[3] for r in requests if r[0] == "POST" and r[1].endswith("/commit")}
    assert commits == scene_files and len(scene_files) == 2  # the .blend and its texture
    results = [r for r in requests if r[0] == "POST" and re.fullmatch(r"/v1/parts/[^/]+/result", r[1])]
    assert [r[2] for r in results] == ["200", "200"]
    with urllib.request.urlopen(link, timeout=30) as resp:
        assert resp.read() == store.open_read(f"archives/{job['id']}.zip").read()


def test_a_broken_direct_upload_is_sent_again_to_a_fresh_url(gcs, tmp_path):
    """The first upload URL's connection is cut mid-body (a real socket that reads a little and
    closes); the client asks for another URL and sends the whole file there, and reports each
    byte to its progress callback once."""
    from framefarm.common.api import _send_direct

    store = gcs.storage()
    data = bytes(range(256)) * 40_000  # 10 MB: far more than the dropping socket reads
    path = tmp_path / "shot.blend"
    path.write_bytes(data)
    server = socket.create_server(("127.0.0.1", 0))

    def read_a_little_and_hang_up() -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(65536)

    cut = threading.Thread(target=read_a_little_and_hang_up)
    cut.start()
    targets = iter([{"url": f"http://127.0.0.1:{server.getsockname()[1]}/upload?upload_id=x", "id": "1"},
                    {"url": store.upload_url("files/incoming/shot", len(data)), "id": "2"}])
    progress: list[int] = []
    try:
        assert _send_direct(lambda: next(targets), path, progress.append)["id"] == "2"
    finally:
        cut.join(10)
        server.close()
    assert store.open_read("files/incoming/shot").read() == data
    assert sum(progress) == len(data)
