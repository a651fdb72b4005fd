#!/usr/bin/env bash
# Installs everything the tests need (Debian packages, Python packages) and runs them.
# Extra arguments go to pytest. CI runs this with FRAMEFARM_REQUIRE_ALL=1, where a
# test that would skip for want of Blender, Redis or a browser fails instead.
set -euo pipefail
EXTRAS="[test]" EXTRA_APT_PACKAGES="xvfb xauth chromium chromium-driver python3-openvdb" source "$(dirname "$0")/setup-env.sh"

# Current Blender and the LTS releases artists use, for the add-on and the worker's bpy back
# end: the `bpy` wheels (Blender as a Python module, ~360 MB each), each in its own
# environment, so their pinned numpy and friends never mix with the farm's own packages.
# A variable already set names a Python to use instead. The three install at once.
bpy_wheel() {  # VAR VENV VERSION
  local var=$1 venv=$2 version=$3
  if [ -n "${!var:-}" ]; then return; fi
  if ! "$venv/bin/python" -c "import bpy" >/dev/null 2>&1; then
    echo "installing the bpy $version wheel into $venv (once)..."
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install -q "bpy==$version" >"$venv/pip.log" 2>&1 || { cat "$venv/pip.log"; return 1; }
  fi
}
bpy_wheel FRAMEFARM_BPY_PYTHON .venv-bpy 5.0.1 & p50=$!
bpy_wheel FRAMEFARM_BPY45_PYTHON .venv-bpy45 4.5.15 & p45=$!
bpy_wheel FRAMEFARM_BPY42_PYTHON .venv-bpy42 4.2.23 & p42=$!
wait $p50 && wait $p45 && wait $p42
export FRAMEFARM_BPY_PYTHON="${FRAMEFARM_BPY_PYTHON:-$PWD/.venv-bpy/bin/python}"
export FRAMEFARM_BPY45_PYTHON="${FRAMEFARM_BPY45_PYTHON:-$PWD/.venv-bpy45/bin/python}"
export FRAMEFARM_BPY42_PYTHON="${FRAMEFARM_BPY42_PYTHON:-$PWD/.venv-bpy42/bin/python}"
# Two test files at a time (pytest-xdist, a file per process: a module's farm fixture is made
# once): most tests wait on Blender, gunicorn and Redis processes, not on this one's CPU.
# FRAMEFARM_TEST_PROCESSES=0 runs them in one process.
exec python -m pytest -n "${FRAMEFARM_TEST_PROCESSES:-2}" --dist loadfile "$@"
