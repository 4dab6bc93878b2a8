#!/usr/bin/env bash
# Command latency on the synthetic BitNet b1.58 2B-4T model: how long `help` and `info` keep the
# REPL and the workbench waiting (the session worker's round trip, with and without the snapshot
# that follows a command). Writes the model (about 1.9 GB) to target/latency-2b4t once.
set -euo pipefail
cd "$(dirname "$0")/.."
model=target/latency-2b4t
# The same build as the tests (scripts/test.sh), so nothing is compiled twice.
cargo build --workspace --release --locked --all-targets
if [[ ! -f "$model/config.json" ]]; then
    target/release/tritlab synth --shape bitnet-2b4t --seed 1 --out "$model"
fi
echo "$(date -u +%F) on $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
target/release/examples/command_latency "$model" "${1:-20}"
