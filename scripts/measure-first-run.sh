#!/usr/bin/env bash
# How long the README's first command takes on a fresh machine: a clean clone of this checkout's
# HEAD, an empty cargo registry and target directory, no display (so tritlab runs the terminal
# tour), every line of `scripts/run.sh` stamped with the seconds since the start.
#
#   scripts/measure-first-run.sh [LOG]     (default LOG: target/first-run.log)
#
# Prints when cargo finished and when the tour's first line appeared. On a machine that already
# has Debian's wasm toolchain the plugins' apt step is skipped; remove rustc-web, cargo-web,
# rust-web-src, wasi-libc and lld-22 first to include it, as a fresh machine would.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
log="$(realpath -m "${1:-$repo/target/first-run.log}")"
mkdir -p "$(dirname "$log")"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

git clone --quiet "$repo" "$scratch/clone"
export CARGO_HOME="$scratch/cargo-home"
unset CARGO_TARGET_DIR DISPLAY WAYLAND_DISPLAY
cd "$scratch/clone"
start=$(date +%s.%N)
echo "start $(date -u +%FT%TZ), commit $(git rev-parse --short HEAD), load $(cut -d' ' -f1-3 /proc/loadavg)" | tee "$log"
scripts/run.sh 2>&1 | awk -v s="$start" '{
  "date +%s.%N" | getline t; close("date +%s.%N")
  printf "%8.1f %s\n", t - s, $0; fflush()
}' >> "$log"
echo "end $(date -u +%FT%TZ), load $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$log"
grep -m1 'Finished `release` profile \[optimized + debuginfo\]' "$log" | sed 's/^ */cargo finished at /; s/ *Finished/ s:/'
awk '/Running `target\/release\/tritlab`/ { getline; printf "the tour began at %s s\n", $1; exit }' "$log"
