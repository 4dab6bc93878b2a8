#!/usr/bin/env bash
# Runs every test of the workspace, building what the tests load first.
# Usage: scripts/test.sh   (from anywhere; installs nothing it does not need)
set -euo pipefail
cd "$(dirname "$0")/.."

# Plugins are WebAssembly components the plugin host's tests load.
if [[ -x scripts/build-plugins.sh ]]; then
  scripts/build-plugins.sh
fi

cargo test --workspace --release --locked
# Benchmarks are not run here, but they must keep compiling.
cargo build --workspace --release --locked --benches
