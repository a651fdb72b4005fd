"""mypy over every package of the four distributions, as configured in pyproject.toml
([tool.mypy]: the source folders on mypy_path, so framefarm.common, .client, .cli, .worker
and .gateway import each other as they do once installed). Any error fails the test.

The add-on is checked as it ships, against Blender's stubs, in test_addon_types.py.
"""
from __future__ import annotations

import re
import subprocess
import sys

from farmtools import REPO, require_module


def test_mypy_finds_no_errors_in_any_package(tmp_path):
    require_module("mypy", "mypy")
    proc = subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "cache"),
                           "--no-error-summary", "--show-error-codes"],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr  # 2: mypy itself could not run
    errors = [line for line in proc.stdout.splitlines() if re.match(r"^\S+\.py:\d+: error: ", line)]
    assert not errors, "\n".join(errors)
