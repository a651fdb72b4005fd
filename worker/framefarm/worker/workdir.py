"""A worker's working folder (`framefarm worker --workdir`), held by one worker at a time.

Two workers on one folder would corrupt each other's work without a word: their slots' warm
Blenders write frames into the same `warm/slot-N` folders (a part could ship the other
worker's frame of the same number), and each one's scene cache evicts scenes the other is
rendering. Two `framefarm worker` commands on one machine share the default folder
($FRAMEFARM_HOME/worker) unless told otherwise, so the second one must refuse to start.

The hold is an flock on `worker.lock` in the folder: the kernel drops it when the process
ends, however it ends (a SIGKILLed worker never blocks its own restart), and the file's
content, the holder's pid, is only there to name it in the error.
"""
from __future__ import annotations

import fcntl
import os
from pathlib import Path

LOCK_NAME = "worker.lock"


class WorkdirError(RuntimeError):
    """The folder cannot be this worker's: another live worker holds it, or it cannot be made."""


def hold(workdir: Path) -> int:
    """Take `workdir` for this process, creating it if need be. Returns the lock's file
    descriptor, to be kept open for as long as the worker runs (closing it lets go). Not
    inherited by Blender or any other child (O_CLOEXEC), so a leftover child holds nothing."""
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        fd = os.open(workdir / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as e:
        raise WorkdirError(f"cannot use {workdir} as the worker's folder: {e.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode("ascii", "replace").strip()
        os.close(fd)
        raise WorkdirError(f"{workdir} is in use by another worker (pid {holder or 'unknown'}); "
                          f"give each worker its own --workdir") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd
