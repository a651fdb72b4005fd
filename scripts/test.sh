#!/usr/bin/env bash
# Installs everything the tests need (Debian packages, Python packages) and runs them.
# Extra arguments go to pytest. CI runs this with FRAMEFARM_REQUIRE_ALL=1, where a
# test that would skip for want of Blender, Redis or a browser fails instead.
set -euo pipefail
EXTRAS="[test]" source "$(dirname "$0")/setup-env.sh"
exec python -m pytest "$@"
