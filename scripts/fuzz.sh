#!/usr/bin/env bash
# Builds the libFuzzer targets with libFuzzer and AddressSanitizer and runs
# each for SECONDS (default 60) on a copy of its corpus:
#   vdpad-fuzz       Fuzz/RPC/FuzzRPC.swift, the RPC input path (Fuzz/RPC/corpus)
#   vdpad-fuzz-ring  Fuzz/Ring/FuzzRing.swift, the data path's rings (Fuzz/Ring/corpus)
# Both are the package's products, declared when VDPAD_FUZZ is set: SwiftPM
# builds every module a target needs with the sanitizers, in .build-fuzz.
# Exit 0 when no crash was found; a crash leaves its input in .build-fuzz/
# and exits 1.
#   scripts/fuzz.sh                 both, 60 s each, as CI does
#   scripts/fuzz.sh 3600 ring       a long run of one (rpc or ring)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
which=${2:-all}
case "$which" in
    all) targets="rpc ring" ;;
    rpc | ring) targets=$which ;;
    *) echo "fuzz.sh: no fuzz target '$which' (rpc, ring or all)" >&2; exit 2 ;;
esac
out=.build-fuzz
for target in $targets; do
    # The ring fuzzer's inputs: a 64-byte header and 16 KiB of the driver's memory.
    if [ "$target" = rpc ]; then product=vdpad-fuzz dir=Fuzz/RPC max_len=8192
    else product=vdpad-fuzz-ring dir=Fuzz/Ring max_len=16448; fi
    # One -sanitize=fuzzer,address after SwiftPM's own (its --sanitize fuzzer makes the link leave main to
    # libFuzzer), not --sanitize twice: swiftc keeps only the last -sanitize= it is given, and SwiftPM orders
    # its two at random, so half the builds had no coverage counters. And
    # --disable-dead-strip: a release link drops unreferenced sections, the libraries' counters among them.
    # Either way the fuzzer would run blind (4 counters instead of thousands); the check below refuses that.
    VDPAD_FUZZ=1 swift build -c release --product "$product" --sanitize fuzzer -Xswiftc -sanitize=fuzzer,address --disable-dead-strip \
        --scratch-path "$out" 2>&1 | grep -v "Cannot export local symbol '__asan" | tail -n 3
    corpus=$out/corpus-$target
    rm -rf "$corpus" && cp -r "$dir/corpus" "$corpus"
    counters=$("$out/release/$product" -runs=0 "$corpus" 2>&1 | sed -n 's/.*(\([0-9]*\) inline 8-bit counters).*/\1/p' | head -1)
    if [ "${counters:-0}" -lt 1000 ]; then
        echo "fuzz.sh: $product has ${counters:-no} coverage counters: the daemon's modules were not instrumented" >&2
        exit 1
    fi
    echo "fuzz.sh: $product, $counters coverage counters, $seconds s"
    "$out/release/$product" -max_total_time="$seconds" -max_len="$max_len" -timeout=10 -print_final_stats=1 \
        -artifact_prefix="$out/$target-" "$corpus"
done
