"""Helpers for the security tests against a live farm: attack scenes made with the real
Blender (tests/attack_scene.py), jobs submitted with a hand-made manifest as an attacker
would, and the colour their frames came out."""
from __future__ import annotations

import uuid
import zipfile
from pathlib import Path
from typing import Any

from farmtools import REPO, make_scene, sha256, wait_for
from framefarm.common.api import FarmAPI
from framefarm.common.api_types import Job
from framefarm.common.http import Client

ATTACK_SCENE = REPO / "tests" / "attack_scene.py"
GREEN, RED, YELLOW, MAGENTA = (0, 255, 0), (255, 0, 0), (255, 255, 0), (255, 0, 255)
TERMINAL = ("done", "failed", "cancelled")


def attack_scene(out: Path, *options: str) -> Path:
    """A one-colour scene made by tests/attack_scene.py with the real Blender."""
    return make_scene(out, *options, script=ATTACK_SCENE)


def png(path: Path, colour: tuple[int, int, int]) -> bytes:
    """A small one-colour PNG written to `path`; returns its bytes."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4), colour).save(path)
    return path.read_bytes()


def farm_api(cluster, token: str) -> FarmAPI:
    return FarmAPI(Client(cluster.urls, token, retry_for=30, discover=False))


def submit(api: FarmAPI, files: dict[str, Path], main: str, frames: str = "1", **fields: Any) -> str:
    """Upload what the farm lacks of `files` (manifest path -> local file) and submit a job of
    exactly that manifest (no packing: an attacker writes the manifest by hand); its id."""
    manifest = {rel: sha256(path.read_bytes()) for rel, path in files.items()}
    by_sha = {sha: files[rel] for rel, sha in manifest.items()}
    for sha in api.missing(sorted(by_sha)):
        api.upload(sha, by_sha[sha])
    payload: Any = {"manifest": manifest, "main": main, "frames": frames, **fields}
    return api.submit(payload, str(uuid.uuid4()))["id"]


def finished(api: FarmAPI, job_id: str, timeout: float = 120) -> Job:
    """The job once it has ended."""
    return wait_for(lambda: (job := api.job(job_id, parts=True))["status"] in TERMINAL and job, timeout,
                    f"job {job_id} to end", interval=0.3)


def frame_colour(api: FarmAPI, job_id: str, folder: Path, frame: int = 1) -> tuple[int, int, int]:
    """The colour at the centre of the job's frame, from the archive the client downloads."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    archive = api.download_archive(job_id, folder / f"{job_id}.zip")
    with zipfile.ZipFile(archive) as zf:
        zf.extract(f"{frame:04d}.png", folder / job_id)
    with Image.open(folder / job_id / f"{frame:04d}.png") as im:
        rgb = im.convert("RGB")
        return rgb.getpixel((rgb.width // 2, rgb.height // 2))  # type: ignore[return-value]


def rendered(api: FarmAPI, job_id: str, folder: Path, timeout: float = 120) -> tuple[int, int, int]:
    """The colour of the job's first frame, once it is done (it must be)."""
    job = finished(api, job_id, timeout)
    assert job["status"] == "done", job
    return frame_colour(api, job_id, folder)
