#!/usr/bin/env bash
# Installs what is missing, builds everything (the end-to-end tests start the
# built vdpad), runs every test, then holds the RPC path to its instruction
# and allocation budgets (scripts/perf-guard.sh, release build); the
# installed layout and the .deb are tested by scripts/test-install.sh; QEMU
# drives vdpad through the preload library in tests/qemu.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# The code as .swift-format says (the toolchain's swift format), and every link of the docs.
swift format lint --strict --configuration .swift-format -r Sources Tests Fuzz
python3 -m unittest discover -s tests/docs
swift build --build-tests
make -s -C preload OUT="$PWD/.build/debug"   # libvdpad-vhost.so next to vdpad-run
swift test --skip-build --skip LoadTests
swift test --skip-build --filter LoadTests   # 1,000 connections, run alone (HostileTests.swift says why)
# An unmodified QEMU 7.2 and a C VMM through the preload library (tests/qemu/test_vmm.py).
python3 -m unittest discover -s tests/qemu -v
# Sessions across SIGKILLs under a stand-in service manager (tests/restart, docs/restart.md).
python3 -m unittest discover -s tests/restart -v
# The Python client, installed as a user would, and its suite against the real daemon (OpenRPC included).
.venv/bin/pip install -q --disable-pip-version-check --no-deps ./clients/python
VDPAD_BINARY="$PWD/.build/debug/vdpad" .venv/bin/python -m pytest -q -p no:cacheprovider clients/python/tests
# Metrics as Prometheus reads them: the reference parser, and Debian's node_exporter scraping the textfile.
VDPAD_BINARY="$PWD/.build/debug/vdpad" .venv/bin/python -m pytest -q -p no:cacheprovider tests/metrics
scripts/test-install.sh
scripts/perf-guard.sh
