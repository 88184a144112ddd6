#!/usr/bin/env bash
# Builds the libFuzzer target (Fuzz/FuzzRPC.swift, the package's vdpad-fuzz
# target, declared when VDPAD_FUZZ is set) with libFuzzer and AddressSanitizer and runs it for SECONDS (default 60) on a
# copy of Fuzz/corpus.  The module graph is Package.swift's own: SwiftPM
# builds every module the target needs with the sanitizers, in .build-fuzz.
# Exit 0 when no crash was found; a crash leaves its input in .build-fuzz/
# and exits 1.
#   scripts/fuzz.sh            60 s, as CI does
#   scripts/fuzz.sh 3600       a long run
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
out=.build-fuzz
# One -sanitize=fuzzer,address after SwiftPM's own (its --sanitize fuzzer makes the link leave main to
# libFuzzer), not --sanitize twice: swiftc keeps only the last -sanitize= it is given, and SwiftPM orders
# its two at random, so half the builds had no coverage counters. And
# --disable-dead-strip: a release link drops unreferenced sections, the libraries' counters among them.
# Either way the fuzzer would run blind (4 counters instead of ~28,000); the check below refuses that.
VDPAD_FUZZ=1 swift build -c release --product vdpad-fuzz --sanitize fuzzer -Xswiftc -sanitize=fuzzer,address --disable-dead-strip \
    --scratch-path "$out" 2>&1 | grep -v "Cannot export local symbol '__asan_extra_spill_area'" | tail -n 3
rm -rf "$out/corpus" && cp -r Fuzz/corpus "$out/corpus"
counters=$("$out/release/vdpad-fuzz" -runs=0 "$out/corpus" 2>&1 | sed -n 's/.*(\([0-9]*\) inline 8-bit counters).*/\1/p' | head -1)
if [ "${counters:-0}" -lt 1000 ]; then
    echo "fuzz.sh: the fuzzer has ${counters:-no} coverage counters: the daemon's modules were not instrumented" >&2
    exit 1
fi
"$out/release/vdpad-fuzz" -max_total_time="$seconds" -max_len=8192 -timeout=10 -print_final_stats=1 \
    -artifact_prefix="$out/" "$out/corpus"
