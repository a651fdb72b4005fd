"""What the benchmarks share: a scratch folder whose processes are stopped at the end."""
from __future__ import annotations

import shutil
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

REPO = Path(__file__).resolve().parent.parent
# The tests' helpers (scene generation, polling) serve the benchmarks too.
sys.path.insert(0, str(REPO / "tests"))


@contextmanager
def scratch(prefix: str) -> Iterator[tuple[Path, list]]:
    """A fresh folder under /tmp (short: Redis's Unix socket lives in it) and a list
    of started processes; on leaving, the processes stop, newest first, and the folder goes."""
    root = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    procs: list = []
    try:
        yield root, procs
    finally:
        for proc in reversed(procs):
            proc.stop()
        shutil.rmtree(root, ignore_errors=True)
