#!/usr/bin/env bash
# Installs vdpad the way a Linux admin expects: release binaries (Swift's
# standard library linked in, so nothing under /opt/swift is needed at run
# time), vdpad-run and its preload library (PREFIX/lib/vdpad), the systemd units with ExecStart under the prefix, the config (an
# existing one is never overwritten), man pages, bash/zsh/fish completions
# and the docs.  Every file installed is listed in
# PREFIX/share/vdpad/install-manifest, which --uninstall reads.
#
#   scripts/install.sh                          into /usr/local, units in /etc/systemd/system
#   scripts/install.sh --prefix /usr            units in /lib/systemd/system (the .deb's layout)
#   scripts/install.sh --destdir /tmp/stage     stage under a root (packaging, tests)
#   scripts/install.sh --uninstall [--prefix P] [--destdir D]
#   scripts/install.sh --no-build               install what .build-install already holds
# After installing: systemctl daemon-reload && systemctl enable --now vdpad.socket
set -euo pipefail
cd "$(dirname "$0")/.."

prefix=/usr/local destdir="" uninstall=0 build=1 unitdir=""
usage() { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) prefix=${2:?--prefix needs a directory}; shift 2 ;;
        --destdir) destdir=${2:?--destdir needs a directory}; shift 2 ;;
        --unitdir) unitdir=${2:?--unitdir needs a directory}; shift 2 ;;
        --uninstall) uninstall=1; shift ;;
        --no-build) build=0; shift ;;
        -h|--help) usage 0 ;;
        *) echo "install.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
case "$prefix" in /*) ;; *) echo "install.sh: --prefix must be absolute, got '$prefix'" >&2; exit 2 ;; esac
prefix=${prefix%/}
# Packaged units go where Debian's systemd looks for them; an admin's local ones to /etc.
[ -n "$unitdir" ] || { [ "$prefix" = /usr ] && unitdir=/lib/systemd/system || unitdir=/etc/systemd/system; }
manifest="$prefix/share/vdpad/install-manifest"

if [ "$uninstall" -eq 1 ]; then
    [ -f "$destdir$manifest" ] || { echo "install.sh: nothing to uninstall: $destdir$manifest not found" >&2; exit 1; }
    while IFS= read -r f; do
        rm -f "$destdir$f" && echo "removed $destdir$f"
    done < "$destdir$manifest"
    rm -f "$destdir$manifest"
    rmdir --ignore-fail-on-non-empty "$destdir$prefix/share/vdpad" "$destdir$prefix/share/doc/vdpad" 2>/dev/null || true
    echo "kept $destdir/etc/vdpad/vdpad.toml (your config) and the state in /var/lib/vdpad"
    exit 0
fi

scratch=.build-install
if [ "$build" -eq 1 ]; then
    scripts/setup.sh
    echo "building release binaries (static Swift stdlib) in $scratch ..."
    swift build -c release --static-swift-stdlib --scratch-path "$scratch" \
        --product vdpad >/dev/null
    swift build -c release --static-swift-stdlib --scratch-path "$scratch" --product vdpad-cli >/dev/null
    swift build -c release --static-swift-stdlib --scratch-path "$scratch" --product vdpad-run >/dev/null
    make -s -C preload OUT="$PWD/$scratch/release" >/dev/null
fi
bin="$scratch/release"
for b in vdpad vdpad-cli vdpad-run libvdpad-vhost.so; do
    [ -x "$bin/$b" ] || { echo "install.sh: $bin/$b is missing (run without --no-build)" >&2; exit 1; }
done

installed=()
put() {  # put MODE SOURCE DEST (DEST without destdir)
    install -D -m "$1" "$2" "$destdir$3"
    installed+=("$3")
    echo "installed $destdir$3"
}

for b in vdpad vdpad-cli vdpad-run; do
    put 0755 "$bin/$b" "$prefix/bin/$b"
    strip --strip-unneeded "$destdir$prefix/bin/$b"
done
# The preload library: vdpad-run looks for it in ../lib/vdpad/ from its own directory.
put 0644 "$bin/libvdpad-vhost.so" "$prefix/lib/vdpad/libvdpad-vhost.so"
strip --strip-unneeded "$destdir$prefix/lib/vdpad/libvdpad-vhost.so"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Units: ExecStart names the installed binary; the socket path is DefaultSocketPath.system.
sed "s|^ExecStart=/usr/local/bin/vdpad|ExecStart=$prefix/bin/vdpad|; s|file:///usr/share/doc/vdpad|file://$prefix/share/doc/vdpad|" \
    systemd/vdpad.service > "$tmp/vdpad.service"
put 0644 "$tmp/vdpad.service" "$unitdir/vdpad.service"
put 0644 systemd/vdpad.socket "$unitdir/vdpad.socket"

if [ -e "$destdir/etc/vdpad/vdpad.toml" ]; then
    echo "kept $destdir/etc/vdpad/vdpad.toml (exists; the shipped one is $prefix/share/vdpad/vdpad.toml.example)"
else
    install -D -m 0644 config/vdpad.toml "$destdir/etc/vdpad/vdpad.toml"
    echo "installed $destdir/etc/vdpad/vdpad.toml"
fi
put 0644 config/vdpad.toml "$prefix/share/vdpad/vdpad.toml.example"
put 0644 config/cost-model.toml "$prefix/share/vdpad/cost-model.toml"  # vdpad-cli replay's cost model

for m in man/vdpad.1 man/vdpad-cli.1 man/vdpad-run.1; do
    gzip -9n -c "$m" > "$tmp/$(basename "$m").gz"
    put 0644 "$tmp/$(basename "$m").gz" "$prefix/share/man/man1/$(basename "$m").gz"
done

# Sourced by bash-completion, not run: no #! line.
"$bin/vdpad-cli" --generate-completion-script bash | sed "1{/^#!/d}" > "$tmp/vdpad-cli.bash"
"$bin/vdpad-cli" --generate-completion-script zsh > "$tmp/_vdpad-cli"
"$bin/vdpad-cli" --generate-completion-script fish > "$tmp/vdpad-cli.fish"
put 0644 "$tmp/vdpad-cli.bash" "$prefix/share/bash-completion/completions/vdpad-cli"
put 0644 "$tmp/_vdpad-cli" "$prefix/share/zsh/vendor-completions/_vdpad-cli"
put 0644 "$tmp/vdpad-cli.fish" "$prefix/share/fish/vendor_completions.d/vdpad-cli.fish"

put 0644 README.md "$prefix/share/doc/vdpad/README.md"
put 0644 docs/protocol.md "$prefix/share/doc/vdpad/protocol.md"

mkdir -p "$(dirname "$destdir$manifest")"
printf '%s\n' "${installed[@]}" > "$destdir$manifest"
echo "manifest: $destdir$manifest"
if [ -z "$destdir" ]; then
    echo "next: systemctl daemon-reload && systemctl enable --now vdpad.socket"
fi
