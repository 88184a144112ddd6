#!/usr/bin/env bash
# Builds the libFuzzer target (Fuzz/FuzzRPC.swift) with AddressSanitizer and
# runs it for SECONDS (default 60) on a copy of Fuzz/corpus.  Exit 0 when no
# crash was found; a crash leaves its input in .build-fuzz/ and exits 1.
#   scripts/fuzz.sh            60 s, as CI does
#   scripts/fuzz.sh 3600       a long run
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
out=.build-fuzz
mkdir -p "$out"
log=.build/checkouts/swift-log/Sources/Logging
[ -d "$log" ] || swift package resolve >/dev/null
flags=(-sanitize=fuzzer,address -parse-as-library -O -I "$out" -L "$out" -swift-version 6)
lib() {  # lib NAME SOURCES...
    local name=$1; shift
    swiftc "${flags[@]}" -wmo -emit-library -static -module-name "$name" -emit-module -emit-module-path "$out/$name.swiftmodule" \
        -o "$out/lib$name.a" "$@"
}
lib Logging -package-name swift_log $(find "$log" -name "*.swift")
lib VDPACore Sources/VDPACore/*.swift
lib VDPAJSON Sources/VDPAJSON/*.swift
lib VDPARegistry Sources/VDPARegistry/*.swift
lib VDPARPC Sources/VDPARPC/*.swift
swiftc "${flags[@]}" -module-name FuzzRPC Fuzz/FuzzRPC.swift -lVDPARPC -lVDPARegistry -lVDPAJSON -lVDPACore -lLogging -o "$out/fuzz-rpc"
rm -rf "$out/corpus" && cp -r Fuzz/corpus "$out/corpus"
"$out/fuzz-rpc" -max_total_time="$seconds" -max_len=8192 -timeout=10 -print_final_stats=1 \
    -artifact_prefix="$out/" "$out/corpus"
