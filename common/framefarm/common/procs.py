"""Child processes that do not outlive their parent.

A worker killed with SIGKILL must not leave Blender rendering a part that the
farm is about to hand to another worker, and `framefarm up` killed hard must not
leave its gateways and workers behind.
"""
from __future__ import annotations

import ctypes
import signal

_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM):
    """A preexec_fn for subprocess.Popen: the child gets `sig` when its parent dies (Linux)."""

    def preexec() -> None:
        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, sig)
        except (OSError, AttributeError):  # not Linux: nothing to set
            pass

    return preexec
