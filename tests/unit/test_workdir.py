"""A worker's folder is held by one worker at a time (worker/workdir.py)."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from framefarm.worker.workdir import LOCK_NAME, WorkdirError, hold


def test_a_held_folder_refuses_a_second_holder_until_the_first_lets_go(tmp_path: Path) -> None:
    folder = tmp_path / "worker"
    fd = hold(folder)  # made where it did not exist
    assert (folder / LOCK_NAME).read_text() == f"{os.getpid()}\n"
    with pytest.raises(WorkdirError, match=f"in use by another worker \\(pid {os.getpid()}\\); give each worker "
                                           f"its own --workdir"):
        hold(folder)
    os.close(fd)
    os.close(hold(folder))


def test_blender_and_other_children_do_not_keep_the_folder_held(tmp_path: Path) -> None:
    """A Blender left running after its worker died must not stop the worker's restart."""
    fd = hold(tmp_path)
    child = subprocess.Popen(["sleep", "60"], close_fds=False)  # it would inherit the lock but for O_CLOEXEC
    try:
        os.close(fd)
        os.close(hold(tmp_path))
    finally:
        child.kill()
        child.wait()


def test_a_folder_that_cannot_be_made_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(WorkdirError, match="cannot use .*/file/worker as the worker's folder: Not a directory"):
        hold(tmp_path / "file" / "worker")
