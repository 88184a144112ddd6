#!/usr/bin/env bash
# Installs what vdpad needs to build and test on Debian: libsystemd-dev
# (sd_notify, socket activation), pkg-config, socat (walk-through),
# systemd's tools (systemd-analyze, systemd-socket-activate) for the tests,
# and valgrind (the RPC path's instruction and allocation budgets).
set -euo pipefail
need=()
dpkg -s libsystemd-dev >/dev/null 2>&1 || need+=(libsystemd-dev)
command -v pkg-config >/dev/null || need+=(pkg-config)
command -v socat >/dev/null || need+=(socat)
command -v systemd-analyze >/dev/null || need+=(systemd)
command -v valgrind >/dev/null || need+=(valgrind)
if [ ${#need[@]} -gt 0 ]; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi
