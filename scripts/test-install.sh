#!/usr/bin/env bash
# The installed layout, tested as an admin would use it:
# 1. install.sh into a temporary DESTDIR;
# 2. in a private mount namespace (so the host's /run and /var/lib are not
#    touched), start the installed vdpad through systemd-socket-activate on
#    the path the installed socket unit names, with the config the installed
#    service names, and drive it with the installed vdpad-cli given no -s;
# 3. --uninstall removes every file but the config;
# 4. the .deb (package-deb.sh, lintian: no errors) holds exactly what
#    install.sh --prefix /usr installs, plus Debian's copyright and changelog.
set -euo pipefail
cd "$(dirname "$0")/.."
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
scripts/install.sh --destdir "$stage/root" >/dev/null
unit="$stage/root/etc/systemd/system"
listen=$(sed -n 's/^ListenStream=//p' "$unit/vdpad.socket")
fdname=$(sed -n 's/^FileDescriptorName=//p' "$unit/vdpad.socket")
exec_start=$(sed -n 's/^ExecStart=//p' "$unit/vdpad.service")
read -r daemon_bin config_flag config_path <<<"$exec_start"
[ "$listen" = /run/vdpad/vdpad.sock ] || { echo "FAIL: the socket unit listens on $listen"; exit 1; }
[ "$daemon_bin" = /usr/local/bin/vdpad ] || { echo "FAIL: ExecStart names $daemon_bin"; exit 1; }
echo "ok: units name $listen and $daemon_bin $config_flag $config_path"

unshare_args=(-m)
[ "$(id -u)" -eq 0 ] || unshare_args=(-r -m)
cat > "$stage/inside.sh" <<INSIDE
set -euo pipefail
mount -t tmpfs none /run
mount -t tmpfs none /var/lib
mkdir -p "\$(dirname "$listen")"
systemd-socket-activate -l "$listen" --fdname="$fdname" \
    "$stage/root$daemon_bin" $config_flag "$stage/root$config_path" >"$stage/daemon.log" 2>&1 &
for _ in \$(seq 50); do [ -S "$listen" ] && break; sleep 0.1; done
out=\$(env -u VDPAD_SOCKET XDG_RUNTIME_DIR=/nonexistent "$stage/root/usr/local/bin/vdpad-cli" dev show)
echo "\$out"
echo "\$out" | grep -Eq '^vdpa0 +vdpasim_net' || { echo "FAIL: the installed CLI did not list vdpa0"; cat "$stage/daemon.log"; exit 1; }
env -u VDPAD_SOCKET "$stage/root/usr/local/bin/vdpad-cli" dev add name vdpa9 mgmtdev mlx5_net
env -u VDPAD_SOCKET "$stage/root/usr/local/bin/vdpad-cli" dev show vdpa9 | grep -q mlx5_net
test -f /var/lib/vdpad/devices.json || { echo "FAIL: no state in /var/lib/vdpad"; exit 1; }
# The installed vdpad-run finds the installed preload library and the system socket by itself.
preload=\$(env -u VDPAD_SOCKET "$stage/root/usr/local/bin/vdpad-run" --device /dev/vhost-vdpa-0=vdpa0 -- sh -c 'echo \$LD_PRELOAD')
[ "\$preload" = "$stage/root/usr/local/bin/../lib/vdpad/libvdpad-vhost.so" ] || { echo "FAIL: LD_PRELOAD=\$preload"; exit 1; }
kill %1
INSIDE
unshare "${unshare_args[@]}" bash "$stage/inside.sh"
echo "ok: the installed daemon, socket-activated on $listen, answered the installed CLI with no -s"

# No daemon: the CLI names both places it looked.
if msg=$(env -u VDPAD_SOCKET XDG_RUNTIME_DIR="$stage" unshare "${unshare_args[@]}" sh -c "mount -t tmpfs none /run; '$stage/root/usr/local/bin/vdpad-cli' dev show" 2>&1); then
    echo "FAIL: vdpad-cli succeeded with no daemon"; exit 1
fi
if [ "$(id -u)" -eq 0 ]; then
    echo "$msg" | grep -q /run/vdpad/vdpad.sock || { echo "FAIL: $msg"; exit 1; }
fi
echo "ok: with no daemon the CLI says where it looked"

scripts/install.sh --destdir "$stage/root" --uninstall >/dev/null
left=$(cd "$stage/root" && find . -type f | sort)
[ "$left" = "./etc/vdpad/vdpad.toml" ] || { echo "FAIL: --uninstall left: $left"; exit 1; }
echo "ok: --uninstall removed everything but the config"

scripts/install.sh --prefix /usr --destdir "$stage/usr-root" --no-build >/dev/null
scripts/package-deb.sh --no-build --out "$stage"
deb=$(ls "$stage"/vdpad_*.deb)
(cd "$stage/usr-root" && find . -type f ! -path ./usr/share/vdpad/install-manifest | sed 's|^\.||' | sort) > "$stage/installed"
dpkg-deb -c "$deb" | awk '$1 !~ /^d/ {print $6}' | sed 's|^\.||' \
    | grep -v -e '^/usr/share/doc/vdpad/copyright$' -e '^/usr/share/doc/vdpad/changelog.Debian.gz$' | sort > "$stage/packaged"
diff -u "$stage/installed" "$stage/packaged" || { echo "FAIL: the .deb and install.sh differ"; exit 1; }
dpkg-deb -I "$deb" conffiles | grep -qx /etc/vdpad/vdpad.toml
dpkg-deb -I "$deb" postinst | grep -q "deb-systemd-helper enable 'vdpad.socket'"
echo "ok: $(basename "$deb") holds what install.sh installs ($(wc -l < "$stage/packaged") files), conffile and socket enabling included"
