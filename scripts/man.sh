#!/usr/bin/env bash
# Regenerates man/*.1 from the commands' --help (swift-argument-parser's
# generate-manual plugin; works offline).  View: man -l man/vdpad-cli.1
set -euo pipefail
cd "$(dirname "$0")/.."
swift package --allow-writing-to-package-directory generate-manual
cp .build/plugins/GenerateManual/outputs/*/*.1 man/
# The help texts' blank lines are paragraph breaks; an empty input line is an mdoc warning
# (lintian's groff check), so write them as .Pp.
sed -i 's/^$/.Pp/' man/*.1
