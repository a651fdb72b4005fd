"""Attacks on the frames' names (issue 12 item 3): a client chooses the pattern its job's zip entries
are named by, so a hostile one must never name an entry outside the job's folder (`..`, an absolute
path, a drive, a NUL, a name no file system holds). Each is refused with 400 bad_output and leaves
nothing behind; a pattern that passes names exactly the job's frames, and the CLI's extraction
refuses an archive that would write outside its folder whatever the gateway did."""
from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from apitools import (bearer, claim, expect_error, farm_of, job_body, put_result, register_worker, scene_bytes,
                      scene_sha, submit, unchanged)
from farmtools import zip_bytes
from framefarm.common.api import extract_frames
from framefarm.common.http import FarmError
from framefarm.gateway import archive, keys

__all__ = ["scene_bytes", "scene_sha"]  # fixtures, imported for pytest

HOSTILE = [
    "../../../etc/cron.d/x_####", "render/../../x_####.png", "/etc/x_####.png", "//server/share/x_####",
    "C:/Windows/x_####.png", "c:x_####", "render\\..\\..\\x_####", "x_####\x00.png", "x_####.png\n",
    "./x_####", "render//x_####", "render/x.png",  # no `#` run: two frames would share one name
    "a" * 250 + "_####.png", "d/" * 520 + "x_####", "#" * 2000,
    "\ud800_####.png",  # a lone surrogate, which JSON can carry and no file name (nor Redis) can
]


@pytest.mark.parametrize("pattern", HOSTILE)
def test_a_hostile_pattern_is_refused_and_records_nothing(http, tokens, scene_sha, pattern: str) -> None:
    with unchanged(http):
        resp = http.post("/v1/jobs", json=job_body(scene_sha, output={"pattern": pattern}),
                         headers=bearer(tokens.client))
        # A lone surrogate is refused for the whole body before any field is read (contract.py).
        err = expect_error(resp, 400, "bad_request" if "\ud800" in pattern else "bad_output")
    assert "Traceback" not in err["message"] and len(err["message"]) < 600


@pytest.mark.parametrize("output", [{"pattern": 5}, {"multilayer": True}, {"pattern": "x_####", "extra": 1},
                                    "render/x_####", {"pattern": "x_####", "multilayer": "yes"}])
def test_a_malformed_output_is_refused(http, tokens, scene_sha, output) -> None:
    with unchanged(http):
        expect_error(http.post("/v1/jobs", json=job_body(scene_sha, output=output), headers=bearer(tokens.client)),
                     400, "bad_output")


def test_the_zip_holds_the_pattern_s_names_and_nothing_else(http, tokens, scene_sha) -> None:
    """A result's entries are the worker's 0009.png whatever the pattern; only the gateway renames
    them, by the job's checked pattern, so a worker cannot choose a name either."""
    job = submit(http, tokens.client, scene_sha, frames="9-11", chunk=2,
                 output={"pattern": "render/shot010_##_v#.exr", "multilayer": True})
    assert job["output"] == {"pattern": "render/shot010_##_v#.exr", "multilayer": True}
    wid = register_worker(http, tokens.worker)
    for _ in range(2):
        part = claim(http, tokens.worker, wid)
        assert part is not None
        assert put_result(http, tokens.worker, part).status_code == 200
    farm = farm_of(http)
    archive.assemble_pending(farm)
    with zipfile.ZipFile(farm.storage.local_path(keys.archive(job["id"]))) as zf:
        assert zf.namelist() == ["render/shot010_##_v9.exr", "render/shot010_##_v10.exr", "render/shot010_##_v11.exr"]
        assert zf.read("render/shot010_##_v10.exr") == b"frame 10"


def test_a_still_keeps_its_plain_name(http, tokens, scene_sha) -> None:
    job = submit(http, tokens.client, scene_sha, frames="3", chunk=None, still=True, pieces=2,
                 output={"pattern": "render/x_####.png"})
    assert job["output"] is None


@pytest.mark.parametrize("entry", ["../escape.png", "/abs.png", "render/../../escape.png"])
def test_extraction_refuses_an_entry_outside_its_folder(tmp_path: Path, entry: str) -> None:
    """The client's own guard (common/api.py), for an archive from a farm that is not to be trusted."""
    archive_path = tmp_path / "job.zip"
    archive_path.write_bytes(zip_bytes({"render/0001.png": b"ok", entry: b"x"}))
    with pytest.raises(FarmError):
        extract_frames(archive_path, tmp_path / "out")
    assert not (tmp_path / "escape.png").exists() and not Path("/abs.png").exists()
