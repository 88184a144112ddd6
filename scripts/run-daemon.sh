#!/usr/bin/env bash
# Builds and runs vdpad on the default config (config/vdpad.toml: creates
# vdpa0 of vdpasim_net).  As root the socket is /run/vdpad/vdpad.sock; as a
# user it is ./.vdpad/vdpad.sock with state in ./.vdpad/state.  Extra
# arguments go to vdpad (e.g. --log-level debug).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
swift build -c release --product vdpad
args=(--config config/vdpad.toml)
if [ "$(id -u)" -ne 0 ]; then
    mkdir -p .vdpad
    args+=(--socket "$PWD/.vdpad/vdpad.sock" --state-dir "$PWD/.vdpad/state")
fi
exec .build/release/vdpad "${args[@]}" "$@"
