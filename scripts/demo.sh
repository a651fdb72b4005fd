#!/usr/bin/env bash
# Sets up Framefarm, starts a farm on this machine, renders a generated sample
# scene on it, prints where the frames are, and stops the farm.
set -euo pipefail
source "$(dirname "$0")/setup-env.sh"

export FRAMEFARM_HOME="${FRAMEFARM_HOME:-$PWD/var/demo}"
sample="$PWD/var/sample"
mkdir -p "$sample"
echo "generating the sample scene with Blender..."
blender -b --factory-startup --python-exit-code 1 --python scripts/make_scene.py -- \
  --output "$sample/shot.blend" --texture "$sample/textures/checker.png" \
  --animated --frames 1-24 --size 160 --samples 16 >"$sample.log" 2>&1 \
  || { cat "$sample.log"; exit 1; }

echo "starting the farm (logs in $FRAMEFARM_HOME/logs)..."
framefarm up --workers 2 --port "${FRAMEFARM_PORT:-8400}" &
farm=$!
trap 'kill -TERM $farm 2>/dev/null; wait $farm 2>/dev/null || true' EXIT
# `up` writes the client config once the gateway answers; until then, wait.
for _ in $(seq 600); do
  [ -f "$FRAMEFARM_HOME/client.json" ] && framefarm jobs >/dev/null 2>&1 && break
  kill -0 $farm 2>/dev/null || { echo "the farm did not start"; exit 1; }
  sleep 0.1
done

framefarm submit "$sample/shot.blend" --frames 1-24 --wait --output "$PWD/var/demo-frames"
echo "done: the frames are in $PWD/var/demo-frames"
