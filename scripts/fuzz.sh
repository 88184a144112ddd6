#!/usr/bin/env bash
# Builds the libFuzzer target (Fuzz/FuzzRPC.swift, the package's vdpad-fuzz
# target, declared when VDPAD_FUZZ is set) with AddressSanitizer and runs it for SECONDS (default 60) on a
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
VDPAD_FUZZ=1 swift build -c release --product vdpad-fuzz --sanitize fuzzer --sanitize address --scratch-path "$out" 2>&1 | grep -v "Cannot export local symbol '__asan_extra_spill_area'" | tail -n 3
rm -rf "$out/corpus" && cp -r Fuzz/corpus "$out/corpus"
"$out/release/vdpad-fuzz" -max_total_time="$seconds" -max_len=8192 -timeout=10 -print_final_stats=1 \
    -artifact_prefix="$out/" "$out/corpus"
