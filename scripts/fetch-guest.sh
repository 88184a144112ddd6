#!/usr/bin/env bash
# Prepares the tiny Linux guest of the guest tests (tests/qemu): Debian's
# kernel, fetched with apt-get download and unpacked with dpkg-deb -x (never
# installed on the host), and a busybox-static initramfs whose /init loads
# virtio_net, virtio_blk and ext4, then runs /test.sh when a test added one
# (an initramfs appended to this one: tests/qemu/guest.py), or else reports
# what the guest sees of its NIC on the serial console, and powers off.
# Everything lands in a cache folder outside git:
#   ${VDPAD_CACHE:-$HOME/.cache/vdpad}/guest/{vmlinuz,initrd.img}
# Idempotent: a complete cache is left as it is.
set -euo pipefail
cache=${VDPAD_CACHE:-$HOME/.cache/vdpad}/guest
[ -f "$cache/vmlinuz" ] && [ -f "$cache/initrd.img" ] && [ "$cache/initrd.img" -nt "$0" ] && exit 0
command -v busybox >/dev/null || { echo "fetch-guest.sh: busybox-static is missing (scripts/setup.sh installs it)" >&2; exit 1; }
mkdir -p "$cache"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The kernel the linux-image-amd64 metapackage points at today.
package=$(apt-cache depends linux-image-amd64 | sed -n 's/^ *Depends: \(linux-image-[0-9].*-amd64\)$/\1/p' | head -1)
[ -n "$package" ] || { echo "fetch-guest.sh: apt-cache knows no linux-image-amd64 (apt-get update?)" >&2; exit 1; }
(cd "$work" && apt-get download "$package" >/dev/null 2>&1) || { echo "fetch-guest.sh: apt-get download $package failed" >&2; exit 1; }
dpkg-deb -x "$work"/linux-image-*.deb "$work/kernel"
cp "$work"/kernel/boot/vmlinuz-* "$cache/vmlinuz"
modules=$(ls -d "$work"/kernel/lib/modules/*)
root="$work/initramfs"
mkdir -p "$root"/{bin,proc,sys,dev,lib/modules}
cp "$(command -v busybox)" "$root/bin/busybox"
# The modules and what they need, in load order (scripts/guest-modules.sh).
. "$(dirname "$0")/guest-modules.sh"
guest_modules "$modules" "$root" virtio_pci virtio_net virtio_blk crc32c_generic ext4
cat > "$root/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
for m in $(cat /lib/modules/order); do  # dependency order
    insmod /lib/modules/$m
done
[ -x /test.sh ] && exec /test.sh
ip link set eth0 up
sleep 1
n=/sys/class/net/eth0
echo "VDPAD-GUEST driver=$(basename $(readlink $n/device/driver)) mac=$(cat $n/address) mtu=$(cat $n/mtu) carrier=$(cat $n/carrier) features=$(cat $n/device/features)"
echo VDPAD-GUEST-UP
sleep 2
# Through the control queue (QEMU 7.2: the guest's own CVQ; 10.0: QEMU's shadow CVQ in ASID 1) to vdpad.
if ip link set eth0 address 02:12:34:56:78:9a; then echo "VDPAD-GUEST-MAC mac=$(cat $n/address)"; fi
sleep 1
poweroff -f
INIT
chmod +x "$root/init"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) > "$cache/initrd.img"
echo "guest ready in $cache ($package)"
