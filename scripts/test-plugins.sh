#!/usr/bin/env bash
# Install every plugin distribution under plugins/ into the environment and run its own tests.
#
#   scripts/test-plugins.sh                 # uses .venv/bin/python
#   PYTHON=/path/to/python scripts/test-plugins.sh [plugins/tunekit-ia3 ...]
#   FAST=1 scripts/test-plugins.sh         # skip the plugins' slow (real-model) tests
#
# Each plugin is installed editable without dependencies (tunekit itself must already be installed),
# then `tunekit methods` must list it with its distribution as provider, then its tests run.
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
case "$PYTHON" in /*) ;; */*) PYTHON="$PWD/$PYTHON" ;; esac  # the tests run from each plugin's folder
if [ "$#" -gt 0 ]; then
  folders=("$@")
else
  folders=(plugins/*/)
fi

pytest_args=(-q -p no:cacheprovider)
if [ "${FAST:-0}" = 1 ]; then
  pytest_args+=(-m "not slow")
fi

status=0
for folder in "${folders[@]}"; do
  folder="${folder%/}"
  [ -f "$folder/pyproject.toml" ] || continue
  dist="$(basename "$folder")"
  echo "== $dist: install"
  "$PYTHON" -m pip install --quiet --no-deps --no-build-isolation -e "$folder"
  echo "== $dist: listed by tunekit"
  if ! COLUMNS=250 TUNEKIT_LOAD_PLUGINS="$dist" "$PYTHON" -m tunekit methods | grep -q "$dist"; then
    echo "!! $dist is installed but \`tunekit methods\` does not list it" >&2
    status=1
    continue
  fi
  echo "== $dist: tests"
  if ! (cd "$folder" && "$PYTHON" -m pytest "${pytest_args[@]}" tests); then
    status=1
  fi
done
exit "$status"
