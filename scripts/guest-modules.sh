# Sourced by the guest fetch scripts (fetch-guest.sh, fetch-kernel612.sh): copies kernel modules and
# everything they need into an initramfs, decompressed, with lib/modules/order listing them in load order.
#   . scripts/guest-modules.sh
#   guest_modules MODULES_DIR INITRAMFS_ROOT MODULE…
# MODULES_DIR is an unpacked kernel's lib/modules/VERSION; its modules.dep (depmod makes it here, on the
# unpacked tree, as the package's postinst would) names each module's dependencies.
guest_modules() {
    local modules=$1 root=$2 order="" path f
    shift 2
    /sbin/depmod -b "${modules%/lib/modules/*}" "$(basename "$modules")"
    add_module() {
        local name=$1 path deps d b
        path=$(awk -F: -v n="/$name.ko" '{ p = $1; sub(/\.(xz|zst|gz)$/, "", p) } index(p, n) && substr(p, length(p) - length(n) + 1) == n { print $1; exit }' "$modules/modules.dep")
        [ -n "$path" ] || { echo "guest_modules: the kernel has no module $name" >&2; exit 1; }
        case " $order " in *" $path "*) return ;; esac
        deps=$(awk -F: -v p="$path" '$1 == p { print $2 }' "$modules/modules.dep")
        for d in $deps; do b=$(basename "$d"); add_module "${b%%.ko*}"; done
        order="$order $path"
    }
    for m in "$@"; do add_module "$m"; done
    mkdir -p "$root/lib/modules"
    : > "$root/lib/modules/order"
    for path in $order; do
        f=$(basename "$path")
        case "$f" in
            *.ko.xz) xz -dc "$modules/$path" > "$root/lib/modules/${f%.xz}"; f=${f%.xz} ;;
            *.ko.zst) zstd -qdc "$modules/$path" > "$root/lib/modules/${f%.zst}"; f=${f%.zst} ;;
            *) cp "$modules/$path" "$root/lib/modules/" ;;
        esac
        echo "$f" >> "$root/lib/modules/order"
    done
}
