"""What the add-on knows at run time, outside Blender's data.

Kept in Python rather than in scene properties: writing to the scene would mark
the artist's file as changed. Scripts and tests read it too (in background mode
there is no popup to look at), e.g. `state.current.notification`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .jobs_store import JobStore


@dataclass
class State:
    submitting: bool = False
    progress_text: str = ""
    progress_fraction: float | None = None
    last_submission: dict[str, Any] = field(default_factory=dict)  # job, uploaded files
    notification: dict[str, Any] = field(default_factory=dict)  # the latest finished/failed job
    connection: str = ""  # result of "Test connection"
    connection_ok: bool | None = None
    messages: list[tuple[str, str]] = field(default_factory=list)  # (level, text), newest last
    downloads: dict[str, list[str]] = field(default_factory=dict)  # job id -> extracted files
    missing_files: list[str] = field(default_factory=list)  # of the last submission refused for them
    store: JobStore | None = None
    cache: Path | None = None  # the add-on's folder of each job's previews (thumbs.py)
    thumbs: dict[str, list[int]] = field(default_factory=dict)  # job id -> frames whose preview is cached
    flipbook: dict[str, Any] = field(default_factory=dict)  # the latest flipbook: job, image, frames, fps

    def say(self, level: str, text: str) -> None:
        self.messages = (self.messages + [(level, text)])[-50:]


current = State()
