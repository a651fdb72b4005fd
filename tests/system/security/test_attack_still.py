"""Hostile clients and workers against split stills (gateway/stills.py), through the HTTP API.

A client's still is bounded at the door: pieces from 1 to 64, one frame, no chunk and no
finishing task of its own, each refused with a 400 that names the field and records
nothing; a denoised still no live worker can merge is refused (409 no_denoiser), and one
whose denoiser is gone is never merged by a worker that cannot denoise. A worker's piece must be the part's frame as OpenEXR: a PNG, or bytes that only
carry the name, are refused (400 bad_result) and change nothing. A piece of the wrong
size or region is the merge's to refuse (tests/system/test_still.py renders them).
"""
from __future__ import annotations

import io
import zipfile

import pytest

from apitools import (bearer, claim, expect_error, farm_of, frames_zip, get_job, job_body, put_result, scene_bytes,
                      scene_sha, submit, unchanged)
from farmtools import zip_bytes
from framefarm.gateway import archive, keys

__all__ = ["scene_bytes", "scene_sha"]  # fixtures, imported for pytest

EXR = b"\x76\x2f\x31\x01" + b"\0" * 60  # the magic number, then anything: the merge reads the rest


def register(http, token: str, *caps: str) -> str:
    resp = http.post("/v1/workers", json={"name": "w", "blender_version": "3.4.1", "capabilities": list(caps)},
                     headers=bearer(token))
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()["id"]


def still(http, token: str, sha: str, **fields):
    return http.post("/v1/jobs", json=job_body(sha, **{"frames": "7", "chunk": None, "still": True, **fields}),
                     headers=bearer(token))


@pytest.mark.parametrize("fields, code, words", [
    ({"pieces": 0}, "bad_pieces", "pieces must be a whole number from 1 to 64"),
    ({"pieces": 100000}, "bad_pieces", "pieces must be a whole number from 1 to 64"),
    ({"pieces": 65}, "bad_pieces", "from 1 to 64"),
    ({"pieces": -3}, "bad_pieces", "from 1 to 64"),
    ({"pieces": "4"}, "bad_pieces", "from 1 to 64"),
    ({"pieces": 2.5}, "bad_pieces", "from 1 to 64"),
    ({"frames": "1-250"}, "bad_frames", "a still is one frame"),
    ({"frames": {"start": 3, "end": 4}}, "bad_frames", "a still is one frame"),
    ({"frames": "99999999999"}, "bad_frames", "frames must be"),
    ({"chunk": 2}, "bad_still", "pieces, not chunks"),
    ({"finish": {"kind": "encode"}}, "bad_finish", "its merge"),
    ({"still": "yes"}, "bad_still", "still must be true or false"),
    ({"denoise": "yes"}, "bad_still", "denoise must be true or false"),
    ({"denoise": True}, "no_denoiser", "can denoise a merged still"),  # no live worker advertises it
])
def test_a_hostile_still_request_is_a_clear_400_and_records_nothing(http, tokens, scene_sha, fields, code, words):
    register(http, tokens.worker, "merge")  # a live worker that merges, but cannot denoise
    with unchanged(http):
        err = expect_error(still(http, tokens.client, scene_sha, **fields), 409 if code == "no_denoiser" else 400,
                           code)
    assert words in err["message"]


def test_pieces_or_a_merge_without_a_still_are_refused(http, tokens, scene_sha):
    with unchanged(http):
        err = expect_error(http.post("/v1/jobs", json=job_body(scene_sha, pieces=4), headers=bearer(tokens.client)),
                           400, "bad_pieces")
        assert "with \"still\": true" in err["message"]
        err = expect_error(http.post("/v1/jobs", json=job_body(scene_sha, finish={"kind": "merge"}),
                                     headers=bearer(tokens.client)), 400, "bad_finish")
        assert "finishing task of a split still" in err["message"]
        err = expect_error(http.post("/v1/jobs", json=job_body(scene_sha, denoise=True), headers=bearer(tokens.client)),
                           400, "bad_still")
        assert "denoise is for a split still" in err["message"]


def test_a_denoised_still_is_merged_only_by_a_worker_that_denoises(http, tokens, scene_sha):
    """Its pieces render anywhere, with the denoising passes; its merge waits for a worker
    advertising merge-denoise, saying so, and a merge-only worker is never handed it."""
    merger = register(http, tokens.worker, "merge")
    denoiser = register(http, tokens.worker, "merge", "merge-denoise")
    job = submit(http, tokens.client, scene_sha, frames="7", chunk=None, still=True, pieces=2, denoise=True)
    assert job["still"] == {"frame": 7, "pieces": 2, "pieces_done": 0, "denoise": True}
    pieces = [claim(http, tokens.worker, merger) for _ in range(2)]
    assert [p["piece"] for p in pieces] == [{"index": i, "of": 2, "frame": 7, "denoise": True} for i in range(2)]
    for part in pieces:
        assert put_result(http, tokens.worker, part, zip_bytes({"0007.exr": EXR})).status_code == 200
    assert claim(http, tokens.worker, merger) is None  # it cannot denoise the merged frame
    merge = claim(http, tokens.worker, denoiser)
    assert merge["kind"] == "merge" and merge["options"] == {"pieces": 2, "denoise": True}
    assert "merge-denoise" in farm_of(http).redis.hget(keys.job(job["id"]), "finishing")


def test_a_denoised_still_whose_denoiser_left_waits_at_its_merge_saying_why(http, tokens, scene_sha):
    merger = register(http, tokens.worker, "merge")
    denoiser = register(http, tokens.worker, "merge-denoise")
    job = submit(http, tokens.client, scene_sha, frames="7", chunk=None, still=True, pieces=1, denoise=True)
    farm_of(http).redis.zrem(keys.WORKERS, denoiser)  # gone: its record ran out
    piece = claim(http, tokens.worker, merger)
    assert put_result(http, tokens.worker, piece, zip_bytes({"0007.exr": EXR})).status_code == 200
    assert claim(http, tokens.worker, merger) is None
    assert "the merge-denoise task waits for a worker that can merge and denoise" in \
        get_job(http, tokens.client, job["id"])["waiting_reason"]


def test_a_still_is_pieces_of_one_frame_then_a_merge_whose_image_alone_is_the_result(http, tokens, scene_sha):
    job = submit(http, tokens.client, scene_sha, frames="7", chunk=None, still=True, pieces=3, format="JPEG")
    assert job["still"] == {"frame": 7, "pieces": 3, "pieces_done": 0}
    assert job["parts"]["total"] == 3 and job["frames"] == {"start": 7, "end": 7, "step": 1, "total": 1, "done": 0}
    assert job["finish"]["kind"] == "merge" and not job["finish"]["keep_frames"]
    wid = register(http, tokens.worker, "merge")
    pieces = [claim(http, tokens.worker, wid) for _ in range(3)]
    assert [(p["kind"], p["frames"], p["piece"]) for p in pieces] == \
        [("render", [7], {"index": i, "of": 3, "frame": 7}) for i in range(3)]
    for part in pieces:
        assert put_result(http, tokens.worker, part, zip_bytes({"0007.exr": EXR})).status_code == 200
    seen = get_job(http, tokens.client, job["id"])
    assert seen["still"]["pieces_done"] == 3 and seen["frames"]["done"] == 0  # done once merged

    merge = claim(http, tokens.worker, wid)
    assert merge["kind"] == "merge" and merge["piece"] is None and merge["frames"] == [7]
    assert merge["options"] == {"pieces": 3, "format": "JPEG"}
    assert put_result(http, tokens.worker, merge, zip_bytes({"0007.jpg": b"jpeg"})).status_code == 200
    farm = farm_of(http)
    assert archive.assemble(farm, job["id"])
    with farm.storage.open_read(keys.archive(job["id"])) as fh, zipfile.ZipFile(io.BytesIO(fh.read())) as zf:
        assert zf.namelist() == ["0007.jpg"]
    assert get_job(http, tokens.client, job["id"])["frames"]["done"] == 1


@pytest.mark.parametrize("entries, words", [
    ({"0007.png": b"\x89PNG\r\n\x1a\n"}, "is not OpenEXR"),
    ({"0007.exr": b"\x89PNG\r\n\x1a\n" + b"\0" * 60}, "is not an OpenEXR file"),
    ({"0007.exr": b""}, "is not an OpenEXR file"),
    ({"0007.exr": EXR, "0008.exr": EXR}, "does not hold the part's frames"),
    ({"0006.exr": EXR}, "does not hold the part's frames"),
])
def test_a_hostile_workers_piece_of_another_format_or_frame_is_refused(http, tokens, scene_sha, entries, words):
    submit(http, tokens.client, scene_sha, frames="7", chunk=None, still=True, pieces=2)
    wid = register(http, tokens.worker, "merge")
    part = claim(http, tokens.worker, wid)
    with unchanged(http):
        err = expect_error(put_result(http, tokens.worker, part, zip_bytes(entries)), 400, "bad_result")
    assert words in err["message"]


def test_an_animation_keeps_its_frames_in_any_format(http, tokens, scene_sha):
    """The piece's OpenEXR rule is a still's alone: an ordinary job's PNG frames still count."""
    submit(http, tokens.client, scene_sha)
    wid = register(http, tokens.worker, "merge")
    part = claim(http, tokens.worker, wid)
    assert part["piece"] is None
    assert put_result(http, tokens.worker, part, frames_zip(part["frames"])).status_code == 200
