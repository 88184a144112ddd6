#!/usr/bin/env bash
# Installs what vdpad needs to build and test on Debian: libsystemd-dev
# (sd_notify, socket activation), pkg-config, socat (walk-through),
# systemd's tools (systemd-analyze, systemd-socket-activate) for the tests,
# valgrind (the RPC path's instruction and allocation budgets) and lintian
# (the .deb's check).
set -euo pipefail
need=()
dpkg -s libsystemd-dev >/dev/null 2>&1 || need+=(libsystemd-dev)
command -v pkg-config >/dev/null || need+=(pkg-config)
command -v socat >/dev/null || need+=(socat)
command -v systemd-analyze >/dev/null || need+=(systemd)
command -v valgrind >/dev/null || need+=(valgrind)
command -v lintian >/dev/null || need+=(lintian)
if [ ${#need[@]} -gt 0 ]; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi
