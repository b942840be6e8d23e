#!/usr/bin/env bash
# The package's install into two fresh virtual environments, one after the other: pip's default (every installed
# module byte-compiled up front) against --no-compile (the Makefile's). Nothing from pip's cache (--no-cache-dir).
#   bash bench/install_time.sh [WORK_DIR]        # default: a temporary folder, removed afterwards
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-$(mktemp -d)}
for arm in default no-compile; do
  python3 -m venv "$work/$arm"
  "$work/$arm/bin/python" -m pip install -q --upgrade pip
done
for arm in default no-compile; do
  flags=(-q --no-cache-dir)
  [ "$arm" = no-compile ] && flags+=(--no-compile)
  start=$(date +%s)
  "$work/$arm/bin/python" -m pip install "${flags[@]}" -e ".[dev]" > /dev/null
  echo "$arm: $(( $(date +%s) - start )) s"
done
[ -z "${1:-}" ] && rm -rf "$work"
exit 0
