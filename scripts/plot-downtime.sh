#!/usr/bin/env bash
# Plots modelled live-migration downtime against guest size — QEMU ≤10.0
# (RAM mapped at device start), QEMU 10.1 (early mapping) and a VMM acking
# IOTLB_PERSIST on a Linux 6.7 parent — with the published points on it, from
# `vdpad-bench flows --json` (release build).  Writes docs/downtime.png.
#   scripts/plot-downtime.sh [OUT.png]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-docs/downtime.png}
command -v gnuplot >/dev/null || { SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo; $SUDO apt-get install -y -qq gnuplot-nox >/dev/null; }
swift build -c release --product vdpad-bench >/dev/null
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
.build/release/vdpad-bench flows --json --sizes 4,16,39,64,128,256,512,1024 > "$work/flows.jsonl"
python3 - "$work" <<'PY'
import json, sys
work = sys.argv[1]
rows = [json.loads(l) for l in open(f"{work}/flows.jsonl") if '"flow"' in l]
for name, flow in [("legacy", "migration_map_at_start"), ("early", "migration_early_map"), ("persist", "migration_persist")]:
    with open(f"{work}/{name}.dat", "w") as f:
        for r in rows:
            if r["flow"] == flow and r["parent"] == "6.7":
                f.write(f'{r["guest_gib"]} {r["modelled_downtime_s"]}\n')
with open(f"{work}/published.dat", "w") as f:
    f.write("39 4.72\n128 14.72\n\n\n39 2.09\n128 5.83\n")
PY
gnuplot <<GP
set terminal pngcairo size 900,560 font "DejaVu Sans,11" noenhanced
set output "$out"
set title "Modelled live-migration downtime, mlx5-like parent, 8 queue pairs (vdpad-bench flows)"
set xlabel "guest memory (GiB)"
set ylabel "downtime (s)"
set logscale xy
set key left top
set grid
plot "$work/legacy.dat" with linespoints lw 2 title "RAM mapped at device start (QEMU <= 10.0)", \
     "$work/early.dat" with linespoints lw 2 title "RAM mapped at init (QEMU 10.1)", \
     "$work/persist.dat" with linespoints lw 2 title "IOTLB_PERSIST acked (Linux 6.7 parent)", \
     "$work/published.dat" index 0 with points pt 7 ps 2 lc rgb "black" title "published, QEMU 10.0 (CX-6 Dx)", \
     "$work/published.dat" index 1 with points pt 5 ps 2 lc rgb "red" title "published, QEMU 10.1 (CX-6 Dx)"
GP
echo "wrote $out"
