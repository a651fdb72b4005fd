# Sourced by demo.sh and test.sh: installs what Framefarm needs on Debian 12 and
# makes a virtual environment in .venv with the project in it.
#   EXTRAS="[test]" to install the test dependencies (requirements-test.txt) too.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# bubblewrap: workers run Blender in its sandbox (docs/security.md), and the tests check it.
# ffmpeg: a worker with it encodes movies (a job's "encode" task: worker/encode.py).
APT_PACKAGES="blender bubblewrap ffmpeg redis-server python3-venv python3-pip ${EXTRA_APT_PACKAGES:-}"
missing=""
for pkg in $APT_PACKAGES; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing="$missing $pkg"
done
if [ -n "$missing" ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "installing Debian packages:$missing"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
# The four distributions (one per role, see pyproject.toml) in one pip call, so each
# one's dependency on another is met by the folder here, never by an index.
PIP_ARGS=(-e ./common -e ./client -e ./worker -e "./backend[gcs]")
[ "${EXTRAS:-}" = "[test]" ] && PIP_ARGS+=(-r requirements-test.txt)
# Editable installs follow source edits by themselves; pip runs again only when what it
# installed from changed (the package lists, this script), so a second run starts at once.
stamp=$(cat */pyproject.toml requirements-test.txt "${BASH_SOURCE[0]}" | sha256sum | cut -c1-16)"${EXTRAS:-}"
if [ "$(cat .venv/installed 2>/dev/null)" != "$stamp" ]; then
  # pip's build chatter goes to a log, shown only if the install fails.
  if ! { .venv/bin/python -m pip install -q --upgrade pip &&
         .venv/bin/python -m pip install -q "${PIP_ARGS[@]}"; } >.venv/pip.log 2>&1; then
    cat .venv/pip.log
    echo "installing the Python packages failed (log above, also in .venv/pip.log)" >&2
    exit 1
  fi
  echo "$stamp" >.venv/installed
fi
export PATH="$PWD/.venv/bin:$PATH"
