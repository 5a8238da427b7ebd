#!/usr/bin/env bash
# Bootstrap and run the bridge on a fresh machine with Python 3.11.
#   ./bridge.sh up     install (first time) and run everything: database, example bank, Dagster UI and daemon
#   ./bridge.sh test   install (first time) and run the test suite
#   ./bridge.sh ARGS   any other `bridge` command, e.g. ./bridge.sh demo, ./bridge.sh process, ./bridge.sh status
set -euo pipefail
cd "$(dirname "$0")"

python_bin="${BRIDGE_PYTHON:-}"
if [ -z "$python_bin" ]; then
  for candidate in python3.11 python3.12 python3; do
    if command -v "$candidate" >/dev/null 2>&1; then python_bin="$candidate"; break; fi
  done
fi
[ -n "$python_bin" ] || { echo "Python 3.11 is needed (set BRIDGE_PYTHON to its path)" >&2; exit 1; }

stamp=.venv/.installed
if [ ! -x .venv/bin/python ]; then
  "$python_bin" -m venv .venv
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e '.[test]'
  touch "$stamp"
fi

command="${1:-up}"
if [ "$#" -gt 0 ]; then shift; fi
case "$command" in
  test)
    exec .venv/bin/python -m pytest "$@"
    ;;
  *)
    exec .venv/bin/bridge "$command" "$@"
    ;;
esac
