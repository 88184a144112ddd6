#!/usr/bin/env bash
# Builds and runs vdpad on the default config (config/vdpad.toml: creates
# vdpa0 of vdpasim_net).  The socket is where vdpad-cli looks without -s:
# /run/vdpad/vdpad.sock as root; as a user $XDG_RUNTIME_DIR/vdpad.sock, or
# ./.vdpad/vdpad.sock without XDG_RUNTIME_DIR; a user's state is in
# ./.vdpad/state.  Extra
# arguments go to vdpad (e.g. --log-level debug).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
swift build -c release --product vdpad
args=(--config config/vdpad.toml)
if [ "$(id -u)" -ne 0 ]; then
    mkdir -p .vdpad
    args+=(--state-dir "$PWD/.vdpad/state")  # the socket: DefaultSocketPath, where vdpad-cli looks
fi
exec .build/release/vdpad "${args[@]}" "$@"
