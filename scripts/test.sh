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

# The NEON kernels, checked against the scalar reference under qemu-user. On by default in CI;
# elsewhere set TRITLAB_TEST_AARCH64=1 (it installs a cross linker and qemu-user with apt-get).
if [[ "${TRITLAB_TEST_AARCH64:-${CI:-}}" == "1" || "${TRITLAB_TEST_AARCH64:-${CI:-}}" == "true" ]]; then
  scripts/test-aarch64.sh
fi
# Benchmarks are not run here, but they must keep compiling.
cargo build --workspace --release --locked --benches
