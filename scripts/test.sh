#!/usr/bin/env bash
# Installs what is missing, builds everything (the end-to-end tests start the
# built vdpad), runs every test, then holds the RPC path to its instruction
# and allocation budgets (scripts/perf-guard.sh, release build); the
# installed layout and the .deb are tested by scripts/test-install.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
swift build --build-tests
swift test --skip-build
scripts/test-install.sh
scripts/perf-guard.sh
