"""A hostile worker's `_meta/` entries in a part's result (issue 10, the result metadata).

A result zip may carry `_meta/stats.json` (what the worker measured) and small previews beside
its frames. The worker is not trusted: an entry outside the two known shapes (a path climbing
out of the folder, a name the farm does not know), a preview of a frame the part does not
render, entries past the folder's bounds (declared or really unpacked) and a stats.json that is
not the documented shape are each refused with 400 `bad_result` naming the fault, and the
refusal changes nothing: Redis and storage stay as they were and the part stays leased. A good
one counts, its measurements reach the job, and the final zip holds only the frames.
"""
from __future__ import annotations

import io
import json
import zipfile

import pytest

from apitools import (claim, expect_error, farm_of, frames_zip, get_job, put_result, register_worker,  # noqa: F401
                      scene_bytes, scene_sha, submit, unchanged)
from farmtools import zip_bytes
from framefarm.gateway import archive, framestats, keys


def with_meta(frames: list[int], meta: dict[str, bytes]) -> bytes:
    return zip_bytes({**{f"{f:04d}.png": f"frame {f}".encode() for f in frames}, **meta})


def stats(frames: list[int], seconds: float = 0.5, rss: int = 200_000_000, load: float = 1.5) -> bytes:
    return json.dumps({"frames": [{"frame": f, "seconds": seconds, "peak_rss_bytes": rss} for f in frames],
                       "load_seconds": load}).encode()


@pytest.fixture
def leased(http, tokens, scene_sha):
    """A job of two 2-frame parts, its first part leased."""
    job = submit(http, tokens.client, scene_sha, frames="1-4", chunk=2)
    wid = register_worker(http, tokens.worker)
    part = claim(http, tokens.worker, wid)
    assert part is not None and part["frames"] == [1, 2]
    return job, wid, part


def refused(http, tokens, part, data: bytes, *words: str) -> None:
    with unchanged(http):
        err = expect_error(put_result(http, tokens.worker, part, data), 400, "bad_result")
    for word in words:
        assert word in err["message"], err
    assert farm_of(http).redis.hget(keys.part(part["id"]), "state") == "leased"


@pytest.mark.parametrize("name", [
    "_meta/../0003.png",                      # climbs out to pose as a frame
    "_meta/previews/../../etc/passwd",
    "_meta/previews/0001.jpg/../../../x",
    "_meta\\..\\0003.png",                    # Windows separators
    "_meta/previews/0001.png",                # not a JPEG name
    "_meta/previews/sub/0001.jpg",
    "_meta/notes.txt",                        # a name the farm does not know
    "_meta/stats.json.bak",
    "_META/stats.json",                       # not the folder: not a frame either
])
def test_a_meta_name_outside_the_known_shapes_is_refused(http, tokens, leased, name):
    _, _, part = leased
    refused(http, tokens, part, with_meta(part["frames"], {name: b"x"}))


def test_a_preview_of_a_frame_the_part_does_not_render_is_refused(http, tokens, leased):
    _, _, part = leased
    refused(http, tokens, part, with_meta(part["frames"], {"_meta/previews/0003.jpg": b"\xff\xd8"}),
            "does not render")


def test_an_entry_twice_is_refused(http, tokens, leased):
    _, _, part = leased
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for f in part["frames"]:
            zf.writestr(f"{f:04d}.png", b"frame")
        zf.writestr(framestats.STATS_NAME, stats(part["frames"]))
        zf.writestr(framestats.STATS_NAME, stats(part["frames"], seconds=0.0))
    refused(http, tokens, part, buf.getvalue(), "twice")


def test_an_oversized_preview_is_refused(http, tokens, leased):
    _, _, part = leased
    refused(http, tokens, part, with_meta(part["frames"], {
        "_meta/previews/0001.jpg": bytes(framestats.MAX_PREVIEW_BYTES + 1)}), "preview")


def test_meta_past_its_total_is_refused(http, tokens, leased):
    _, _, part = leased
    padding = {"frames": [], "load_seconds": 0, "pad": "x" * framestats.MAX_META_BYTES}
    refused(http, tokens, part, with_meta(part["frames"], {framestats.STATS_NAME: json.dumps(padding).encode()}),
            "_meta/")


def test_a_meta_entry_lying_about_its_size_is_refused_without_reading_past_the_bounds(http, tokens, leased):
    """A preview declaring 10 bytes that inflates to 50 MB: the bytes read are counted, not the
    declaration believed."""
    _, _, part = leased
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for f in part["frames"]:
            zf.writestr(f"{f:04d}.png", b"frame")
        zf.writestr("_meta/previews/0001.jpg", bytes(50 * 1024 * 1024))
    data = bytearray(buf.getvalue())
    central = data.rfind(b"PK\x01\x02")  # the last entry's central directory header: its size at +24
    data[central + 24:central + 28] = (10).to_bytes(4, "little")
    refused(http, tokens, part, bytes(data))


@pytest.mark.parametrize("doc", [
    b"not json",
    b"[1, 2]",
    b'{"frames": {"1": 0.5}}',
    b'{"frames": [1, 2]}',
    b'{"frames": [{"frame": 3, "seconds": 1}]}',                 # not this part's frame
    b'{"frames": [{"frame": 1, "seconds": 1}, {"frame": 1, "seconds": 1}]}',
    b'{"frames": [{"frame": "1", "seconds": 1}]}',
    b'{"frames": [{"frame": true, "seconds": 1}]}',
    b'{"frames": [{"frame": 1, "seconds": -1}]}',
    b'{"frames": [{"frame": 1, "seconds": NaN}]}',
    b'{"frames": [{"frame": 1, "seconds": 1e400}]}',
    b'{"frames": [{"frame": 1, "seconds": "1"}]}',
    b'{"frames": [{"frame": 1}]}',
    b'{"frames": [{"frame": 1, "seconds": 1, "peak_rss_bytes": 1' + b"0" * 400 + b'}]}',
    b'{"frames": [], "load_seconds": -0.5}',
    b"[" * 100_000 + b"]" * 100_000,
])
def test_a_malformed_stats_json_is_refused(http, tokens, leased, doc):
    _, _, part = leased
    refused(http, tokens, part, with_meta(part["frames"], {framestats.STATS_NAME: doc}), "stats.json")


def test_good_meta_counts_reaches_the_job_and_stays_out_of_the_final_zip(http, tokens, leased):
    job, wid, part = leased
    assert part["kind"] == "render" and part["seconds_per_frame"] is None  # nothing measured yet
    first = with_meta(part["frames"], {framestats.STATS_NAME: stats(part["frames"], seconds=0.5, rss=300),
                                       "_meta/previews/0001.jpg": b"\xff\xd8\xff", "_meta/": b""})
    assert put_result(http, tokens.worker, part, first).status_code == 200
    measured = get_job(http, tokens.client, job["id"])
    assert measured["seconds_per_frame"] == pytest.approx(0.5) and measured["peak_rss_bytes"] == 300
    second = claim(http, tokens.worker, wid)
    assert second is not None and second["seconds_per_frame"] == pytest.approx(0.5)
    # An older worker sends no stats: it counts, and the job's measurements stay as they were.
    assert put_result(http, tokens.worker, second, frames_zip(second["frames"])).status_code == 200
    assert get_job(http, tokens.client, job["id"])["seconds_per_frame"] == pytest.approx(0.5)
    farm = farm_of(http)
    archive.assemble_pending(farm)
    assert get_job(http, tokens.client, job["id"])["status"] == "done"
    with farm.storage.open_read(keys.archive(job["id"])) as fh, zipfile.ZipFile(io.BytesIO(fh.read())) as zf:
        assert sorted(zf.namelist()) == ["0001.png", "0002.png", "0003.png", "0004.png"]
