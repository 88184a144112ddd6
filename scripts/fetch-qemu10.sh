#!/usr/bin/env bash
# Fetches QEMU 10.0 from bookworm-backports for the control-queue tests
# (tests/qemu), without touching the system: a private apt configuration
# (scripts/apt-backports.sh: the mirror of the machine's own apt sources,
# its own state and cache folders), apt-get download of
# qemu-system-x86, -common and -data, and dpkg-deb -x into one tree in a
# cache folder outside git.  Run it as
#   QEMU_MODULE_DIR=$T/usr/lib/x86_64-linux-gnu/qemu $T/usr/bin/qemu-system-x86_64 -L $T/usr/share/qemu …
# with T=${VDPAD_CACHE:-$HOME/.cache/vdpad}/qemu-10.  Idempotent.
set -euo pipefail
cache=${VDPAD_CACHE:-$HOME/.cache/vdpad}
tree=$cache/qemu-10
[ -x "$tree/usr/bin/qemu-system-x86_64" ] && exit 0
. "$(dirname "$0")/apt-backports.sh"
backports_apt "$cache/apt-backports"
version=$(apt-cache "${apt[@]}" show qemu-system-x86 | sed -n 's/^Version: \(1:10\.0\..*\)$/\1/p' | head -1)
[ -n "$version" ] || { echo "fetch-qemu10.sh: no QEMU 10.0 in bookworm-backports" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get "${apt[@]}" download "qemu-system-x86=$version" "qemu-system-common=$version" "qemu-system-data=$version" >/dev/null 2>&1)
mkdir -p "$tree.new"
for deb in "$work"/*.deb; do dpkg-deb -x "$deb" "$tree.new"; done
rm -rf "$tree" && mv "$tree.new" "$tree"
echo "QEMU $version in $tree"
