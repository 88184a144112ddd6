#!/usr/bin/env bash
# Installs what vdpad needs to build and test on Debian: libsystemd-dev
# (sd_notify, socket activation), pkg-config, socat (walk-through),
# systemd's tools (systemd-analyze, systemd-socket-activate) for the tests,
# valgrind (the RPC path's instruction and allocation budgets), lintian
# (the .deb's check), json-c (the preload library) and QEMU 7.2 (the
# unmodified VMM the preload library is tested with).
set -euo pipefail
need=()
dpkg -s libsystemd-dev >/dev/null 2>&1 || need+=(libsystemd-dev)
command -v pkg-config >/dev/null || need+=(pkg-config)
command -v socat >/dev/null || need+=(socat)
command -v systemd-analyze >/dev/null || need+=(systemd)
command -v valgrind >/dev/null || need+=(valgrind)
command -v lintian >/dev/null || need+=(lintian)
# The preload library (json-c), and the VMM it is proven with (QEMU 7.2, Debian's).
pkg-config --exists json-c 2>/dev/null || need+=(libjson-c-dev)
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
command -v cc >/dev/null || need+=(gcc)
# The guest tests: busybox for its initramfs, cpio to pack it, depmod to order its modules, a static libc
# for the programs the guests run (tests/guest).
[ -x /bin/busybox ] || need+=(busybox-static)
command -v cpio >/dev/null || need+=(cpio)
[ -x /usr/sbin/depmod ] || [ -x /sbin/depmod ] || need+=(kmod)
command -v xz >/dev/null || need+=(xz-utils)
command -v zstd >/dev/null || need+=(zstd)
[ -f /usr/lib/x86_64-linux-gnu/libc.a ] || need+=(libc6-dev)
# The metrics test scrapes vdpad's textfile through Debian's node_exporter (never started as a service here).
command -v prometheus-node-exporter >/dev/null || need+=(prometheus-node-exporter)
if [ ${#need[@]} -gt 0 ]; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi
# The tiny Linux guest (Debian's kernel, never installed), cached outside git.
"$(dirname "$0")"/fetch-guest.sh
# The Python client's test tools (pinned), in a virtual environment, never the system Python.
requirements=clients/python/requirements-test.txt
venv="$(dirname "$0")/../.venv"
if ! cmp -s "$(dirname "$0")/../$requirements" "$venv/.requirements" 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$(dirname "$0")/../$requirements"
    cp "$(dirname "$0")/../$requirements" "$venv/.requirements"
fi
# QEMU 10.0 from bookworm-backports, unpacked into the same cache (the system's QEMU stays 7.2).
"$(dirname "$0")"/fetch-qemu10.sh
# Linux 6.12 from bookworm-backports with its vdpa, vhost_vdpa and vduse modules: the real kernel of the
# differential test (tests/qemu/test_kernel612.py), never installed.
"$(dirname "$0")"/fetch-kernel612.sh

