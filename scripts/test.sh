#!/usr/bin/env bash
# Installs what is missing, builds everything (the end-to-end tests start the
# built vdpad), and runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
swift build --build-tests
swift test --skip-build
