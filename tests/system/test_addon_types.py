"""Type-check the add-on as it ships (the built zip, vendored client included)
against fake-bpy-module's stubs of Blender 4.2's Python API, with mypy.

The stubs catch what Blender only reports at run time, in a panel's draw call
nobody has opened yet: a misspelled property, a wrong icon name, a layout call
that does not exist. The vendored code is type-checked where it lives in the
repository; here it only has to be importable.
"""
from __future__ import annotations

import os
import subprocess
import sys
import zipfile

from farmtools import REPO, require_module, skip_or_fail

MYPY_INI = """\
[mypy]
python_version = 3.11
check_untyped_defs = True
warn_unused_ignores = True
[mypy-framefarm_addon._vendor.*]
ignore_errors = True
"""


def test_addon_type_checks_against_fake_bpy_module(tmp_path):
    require_module("mypy", "mypy")
    stubs = [p for p in sys.path if os.path.isdir(os.path.join(p, "bpy-stubs"))]
    if not stubs:
        skip_or_fail("fake-bpy-module is not installed (pip install fake-bpy-module-4.2)")
    archive = tmp_path / "framefarm_addon.zip"
    subprocess.run([sys.executable, str(REPO / "packaging" / "build_addon.py"), "--output", str(archive)],
                   check=True, capture_output=True, timeout=60)
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(tmp_path)
    (tmp_path / "mypy.ini").write_text(MYPY_INI)
    proc = subprocess.run([sys.executable, "-m", "mypy", "--config-file", "mypy.ini", "--no-incremental",
                           "-p", "framefarm_addon"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
