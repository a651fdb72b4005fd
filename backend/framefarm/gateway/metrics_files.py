"""Where a gateway's gunicorn processes keep their Prometheus metrics (metrics.py): one folder of
files per master, PROMETHEUS_MULTIPROC_DIR, which a scrape of any process sums. Used by
gunicorn_conf.py in the master, before any process makes a metric; standard library only, so
the master imports nothing of the app's.
"""
from __future__ import annotations

import os
import shutil
import tempfile

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_OURS = "framefarm-metrics-"


def prepare_multiprocess() -> None:
    """Before gunicorn forks its processes: a folder for their metrics files, emptied, so the
    numbers of an earlier run (or of dead processes' pids reused) never add up into this one."""
    folder = os.environ.get(MULTIPROC_ENV)
    if not folder:
        os.environ[MULTIPROC_ENV] = tempfile.mkdtemp(prefix=_OURS)
        return
    os.makedirs(folder, exist_ok=True)
    for name in os.listdir(folder):
        if name.endswith(".db"):
            os.unlink(os.path.join(folder, name))


def process_gone(pid: int) -> None:
    """A gunicorn process exited (gunicorn_conf.child_exit): its live gauges stop counting."""
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


def remove_folder() -> None:
    folder = os.environ.get(MULTIPROC_ENV, "")
    if os.path.basename(folder).startswith(_OURS):  # only the one we made
        shutil.rmtree(folder, ignore_errors=True)
