"""Helpers for the .blend header tests (unit and system)."""
from __future__ import annotations

import io


class Unseekable(io.RawIOBase):
    """An upload-like stream: no seek, and short reads."""

    def __init__(self, data: bytes, max_read: int = 1000) -> None:
        self._data = io.BytesIO(data)
        self._max_read = max_read

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        chunk = self._data.read(min(len(buffer), self._max_read))
        buffer[: len(chunk)] = chunk
        return len(chunk)
