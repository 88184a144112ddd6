#!/usr/bin/env bash
# Prepares the real-kernel guest of the differential test (tests/kernel, issue 25): Debian's
# bookworm-backports kernel 6.12 (linux-image-amd64 there), fetched with apt-get download through the
# private apt configuration of scripts/apt-backports.sh and unpacked with dpkg-deb -x — never installed —
# and a busybox initramfs holding its vdpa, vhost_vdpa and vduse modules (in load order, from the
# modules.dep that depmod makes on the unpacked tree).  The test appends its own programs and /test.sh
# (tests/qemu/guest.py).  Everything lands in a cache folder outside git:
#   ${VDPAD_CACHE:-$HOME/.cache/vdpad}/kernel-6.12/{vmlinuz,initrd.img,version}
# Idempotent: a complete cache is left as it is.
set -euo pipefail
cache=${VDPAD_CACHE:-$HOME/.cache/vdpad}
out=$cache/kernel-6.12
[ -f "$out/vmlinuz" ] && [ -f "$out/initrd.img" ] && [ "$out/initrd.img" -nt "$0" ] && exit 0
command -v busybox >/dev/null || { echo "fetch-kernel612.sh: busybox-static is missing (scripts/setup.sh installs it)" >&2; exit 1; }
. "$(dirname "$0")/apt-backports.sh"
backports_apt "$cache/apt-backports"
package=$(apt-cache "${apt[@]}" depends linux-image-amd64/"$(. /etc/os-release && echo "$VERSION_CODENAME")-backports" 2>/dev/null \
    | sed -n 's/^ *Depends: \(linux-image-6\.12[^ ]*-amd64\)$/\1/p' | head -1)
[ -n "$package" ] || package=$(apt-cache "${apt[@]}" search --names-only '^linux-image-6\.12\.[0-9.+~a-z-]*-amd64$' | awk '{print $1}' | grep -v -- '-dbg' | sort -V | tail -1)
[ -n "$package" ] || { echo "fetch-kernel612.sh: no linux-image 6.12 in backports" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get "${apt[@]}" download "$package" >/dev/null 2>&1) || { echo "fetch-kernel612.sh: apt-get download $package failed" >&2; exit 1; }
dpkg-deb -x "$work"/linux-image-*.deb "$work/kernel"
modules=$(ls -d "$work"/kernel/lib/modules/*)
root=$work/initramfs
mkdir -p "$root"/{bin,proc,sys,dev,lib/modules}
cp "$(command -v busybox)" "$root/bin/busybox"
. "$(dirname "$0")/guest-modules.sh"
guest_modules "$modules" "$root" vhost_vdpa vduse
cat > "$root/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs devtmpfs /dev
for m in $(cat /lib/modules/order); do insmod /lib/modules/$m || echo "VDPAD-KERNEL insmod $m failed"; done
[ -x /test.sh ] && exec /test.sh
echo "VDPAD-KERNEL up $(uname -r)"
poweroff -f
INIT
chmod +x "$root/init"
mkdir -p "$out"
cp "$work"/kernel/boot/vmlinuz-* "$out/vmlinuz"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) > "$out/initrd.img"
echo "$package" > "$out/version"
echo "kernel guest ready in $out ($package)"
