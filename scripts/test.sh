#!/usr/bin/env bash
# Installs everything the tests need (Debian packages, Python packages) and runs them.
# Extra arguments go to pytest. CI runs this with FRAMEFARM_REQUIRE_ALL=1, where a
# test that would skip for want of Blender, Redis or a browser fails instead.
set -euo pipefail
EXTRAS="[test]" EXTRA_APT_PACKAGES="xvfb xauth chromium chromium-driver" source "$(dirname "$0")/setup-env.sh"

# Current Blender for the add-on and the worker's bpy back end: the `bpy` wheel
# (Blender 5.0 as a Python module, ~360 MB) in its own environment, so its pinned
# numpy and friends never mix with the farm's own packages.
if [ -z "${FRAMEFARM_BPY_PYTHON:-}" ]; then
  if ! .venv-bpy/bin/python -c "import bpy" >/dev/null 2>&1; then
    echo "installing the bpy 5.0.1 wheel into .venv-bpy (once)..."
    python3 -m venv .venv-bpy
    .venv-bpy/bin/python -m pip install -q bpy==5.0.1 >.venv-bpy/pip.log 2>&1 \
      || { cat .venv-bpy/pip.log; exit 1; }
  fi
  export FRAMEFARM_BPY_PYTHON="$PWD/.venv-bpy/bin/python"
fi
exec python -m pytest "$@"
