#!/usr/bin/env bash
# Builds a Debian package from install.sh's layout (prefix /usr, units in
# /lib/systemd/system, /etc/vdpad/vdpad.toml as a conffile) with
# dpkg-deb --build, then checks it with lintian (no errors allowed).
# Its maintainer scripts enable vdpad.socket the Debian way
# (deb-systemd-helper), and start it only where systemd runs.
#   scripts/package-deb.sh [--no-build] [--out DIR]     → DIR/vdpad_VERSION_ARCH.deb
set -euo pipefail
cd "$(dirname "$0")/.."
out=. build=()
while [ $# -gt 0 ]; do
    case "$1" in
        --no-build) build=(--no-build); shift ;;
        --out) out=${2:?--out needs a directory}; shift 2 ;;
        -h|--help) sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "package-deb.sh: unknown argument '$1'" >&2; exit 2 ;;
    esac
done
version=$(sed -n 's/.*static let version = "\(.*\)".*/\1/p' Sources/VDPADaemon/Daemon.swift)
arch=$(dpkg --print-architecture)
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
scripts/install.sh --prefix /usr --destdir "$root" "${build[@]}" >/dev/null
# The manifest is for install.sh --uninstall; dpkg keeps its own list.
rm -f "$root/usr/share/vdpad/install-manifest"

doc="$root/usr/share/doc/vdpad"
cat > "$doc/copyright" <<'COPYRIGHT'
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: vdpad

Files: *
Copyright: 2026 the vdpad authors
License: Apache-2.0
 On Debian systems the full text of the Apache License 2.0 is in
 /usr/share/common-licenses/Apache-2.0.
COPYRIGHT
printf 'vdpad (%s-1) unstable; urgency=medium\n\n  * Package built from the vdpad source tree.\n\n -- vdpad maintainers <vdpad@example.org>  %s\n' \
    "$version" "$(date -R -d @"$(git log -1 --format=%ct 2>/dev/null || date +%s)")" | gzip -9n > "$doc/changelog.Debian.gz"

mkdir -p "$root/DEBIAN"
installed_kb=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat > "$root/DEBIAN/control" <<CONTROL
Package: vdpad
Version: $version-1
Architecture: $arch
Maintainer: vdpad maintainers <vdpad@example.org>
Installed-Size: $installed_kb
Depends: libc6 (>= 2.34), libsystemd0, libstdc++6, libgcc-s1, libjson-c5
Section: admin
Priority: optional
Homepage: https://example.org/vdpad
Description: user-space vDPA devices served to VMMs over JSON-RPC
 vdpad models the kernel's vdpa bus and vhost-vdpa driver in user space:
 virtqueues, groups, address spaces and their IOTLBs, with the kernel's
 rules and errno, served as JSON-RPC 2.0 over a Unix socket to virtual
 machine monitors and administrators (vdpad-cli).
CONTROL
echo /etc/vdpad/vdpad.toml > "$root/DEBIAN/conffiles"
# What dh_installsystemd would write for a socket-activated service.
cat > "$root/DEBIAN/postinst" <<'POSTINST'
#!/bin/sh
set -e
if [ "$1" = "configure" ] || [ "$1" = "abort-upgrade" ] || [ "$1" = "abort-deconfigure" ] || [ "$1" = "abort-remove" ]; then
    deb-systemd-helper unmask 'vdpad.socket' >/dev/null || true
    if deb-systemd-helper --quiet was-enabled 'vdpad.socket'; then
        deb-systemd-helper enable 'vdpad.socket' >/dev/null || true
    else
        deb-systemd-helper update-state 'vdpad.socket' >/dev/null || true
    fi
    if [ -d /run/systemd/system ]; then
        systemctl --system daemon-reload >/dev/null || true
        deb-systemd-invoke start 'vdpad.socket' >/dev/null || true
    fi
fi
POSTINST
cat > "$root/DEBIAN/prerm" <<'PRERM'
#!/bin/sh
set -e
if [ -d /run/systemd/system ] && [ "$1" = remove ]; then
    deb-systemd-invoke stop 'vdpad.socket' 'vdpad.service' >/dev/null || true
fi
PRERM
cat > "$root/DEBIAN/postrm" <<'POSTRM'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
    systemctl --system daemon-reload >/dev/null || true
fi
if [ "$1" = "remove" ]; then
    if [ -x "/usr/bin/deb-systemd-helper" ]; then
        deb-systemd-helper mask 'vdpad.socket' 'vdpad.service' >/dev/null || true
    fi
fi
if [ "$1" = "purge" ]; then
    if [ -x "/usr/bin/deb-systemd-helper" ]; then
        deb-systemd-helper purge 'vdpad.socket' 'vdpad.service' >/dev/null || true
        deb-systemd-helper unmask 'vdpad.socket' 'vdpad.service' >/dev/null || true
    fi
    rm -rf /var/lib/vdpad
fi
POSTRM
chmod 0755 "$root/DEBIAN/postinst" "$root/DEBIAN/prerm" "$root/DEBIAN/postrm"
find "$root" -type d -exec chmod 0755 {} +
mkdir -p "$out"
deb="$out/vdpad_${version}-1_${arch}.deb"
dpkg-deb --root-owner-group --build "$root" "$deb" >/dev/null
echo "built $deb"
if command -v lintian >/dev/null; then
    # Errors fail the build; warnings are printed for the reader.
    lintian --fail-on error --suppress-tags initial-upload-closes-no-bugs "$deb"
    echo "lintian: no errors"
fi
