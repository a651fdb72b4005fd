"""The farm jobs of each .blend file, kept outside the .blend.

Submitting must leave the artist's file untouched (not even dirty), so the job
list cannot live in the scene; it is a small JSON file in the add-on's user
folder, keyed by the .blend's path, and survives restarting Blender.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from ._vendor.framefarm.client.submission import TERMINAL

Record = dict[str, Any]
MAX_PER_FILE = 50  # the oldest finished jobs drop off the list


def record_from_job(job: dict[str, Any], old: Record | None = None) -> Record:
    """The part of a gateway job view the panel shows; `old` keeps local fields."""
    rec: Record = dict(old or {})
    rec.update(id=job["id"], name=job.get("name", ""), status=job["status"], rev=job.get("rev", 0),
               done=job["frames"]["done"], total=job["frames"]["total"],
               frames=f"{job['frames']['start']}-{job['frames']['end']}",
               error=job.get("error") or "", waiting=job.get("waiting_reason") or "",
               blender=job.get("blender_version", ""), paused=bool(job.get("paused")))
    rec["step"] = job["frames"].get("step", 1)
    output = job.get("output")  # where "Download Frames" finds each frame in the zip (output_names.py)
    rec["output"] = output.get("pattern") if isinstance(output, dict) else None
    rec["estimate"] = job.get("estimate")  # an estimate's numbers once its sample frames are in
    if job.get("download_url"):
        rec["download_url"] = job["download_url"]
    rec.setdefault("submitted_at", time.time())
    rec.setdefault("notified", False)
    return rec


class JobStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._data: dict[str, list[Record]] = {}
        self.load()

    def load(self) -> None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = {}
        self._data = data if isinstance(data, dict) else {}

    def save(self) -> None:
        """Write atomically, so a crash never leaves half a file."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".jobs-", dir=self.path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(self._data, out, indent=1, sort_keys=True)
        os.replace(tmp, self.path)

    def records(self, blend: str) -> list[Record]:
        return list(self._data.get(blend, []))

    def find(self, job_id: str) -> tuple[str, Record] | None:
        for blend, recs in self._data.items():
            for rec in recs:
                if rec.get("id") == job_id:
                    return blend, rec
        return None

    def upsert(self, blend: str, rec: Record) -> Record:
        recs = [r for r in self._data.get(blend, []) if r.get("id") != rec["id"]]
        recs.insert(0, rec)
        finished = [r for r in recs if r.get("status") in TERMINAL]
        while len(recs) > MAX_PER_FILE and finished:
            recs.remove(finished.pop())
        self._data[blend] = recs
        self.save()
        return rec

    def update_job(self, job: dict[str, Any]) -> Record | None:
        """Merge a fresh job view into its record, wherever it is; None if unknown."""
        found = self.find(job["id"])
        if found is None:
            return None
        blend, old = found
        recs = self._data[blend]
        new = record_from_job(job, old)
        recs[recs.index(old)] = new
        self.save()
        return new

    def set_field(self, job_id: str, **fields: Any) -> None:
        found = self.find(job_id)
        if found is not None:
            found[1].update(fields)
            self.save()

    def remove(self, job_id: str) -> None:
        for blend, recs in self._data.items():
            self._data[blend] = [r for r in recs if r.get("id") != job_id]
        self.save()

    def active(self) -> list[str]:
        return [r["id"] for recs in self._data.values() for r in recs if r.get("status") not in TERMINAL]
