#!/usr/bin/env bash
# Throughput of `tritlab serve` with continuous batching: aggregate tokens/s at 1 (sequential), 4
# and 8 concurrent streams, on the default model and on a random checkpoint of the 2B-4T shape.
#
#   scripts/bench-server.sh            # both models
#   TRITLAB_BENCH_MODELS=default scripts/bench-server.sh
#
# Builds tritlab (release) unless TRITLAB_BIN names a binary. Prints the machine, the date, the
# load average before and after, the exact commands, and a table per model
# (scripts/bench-server.py). `--threads` is TRITLAB_THREADS (default: all cores).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
target="${CARGO_TARGET_DIR:-$repo/target}"
tritlab="${TRITLAB_BIN:-}"
if [[ -z "$tritlab" ]]; then
    cargo build --release --locked -p tritlab
    tritlab="$target/release/tritlab"
fi
threads="${TRITLAB_THREADS:-$(nproc)}"
models="${TRITLAB_BENCH_MODELS:-default 2b4t}"

scratch="$(mktemp -d)"
server_pid=""
cleanup() {
    if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$scratch"
}
trap cleanup EXIT

echo "machine: $(nproc) vCPU, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
echo "date: $(date -u '+%Y-%m-%d %H:%M UTC'); tritlab $(git rev-parse --short HEAD 2>/dev/null || echo '?')"

for which in $models; do
    case "$which" in
        default) model=default; tokens=128 ;;
        2b4t)
            model="$scratch/2b4t"
            "$tritlab" synth --shape bitnet-2b4t --seed 1 --out "$model" >/dev/null
            tokens=64 ;;
        *) echo "unknown model $which (default, 2b4t)" >&2; exit 2 ;;
    esac
    mkfifo "$scratch/out-$which"
    serve=("$tritlab" --threads "$threads" serve "$model" --port 0 --max-batch 8)
    "${serve[@]}" >"$scratch/out-$which" 2>"$scratch/err-$which" &
    server_pid=$!
    exec 3<"$scratch/out-$which"
    read -r -t 600 line <&3 || { cat "$scratch/err-$which" >&2; exit 1; }
    url="${line#listening on }"
    echo
    echo "model: $which; server: ${serve[*]/#$scratch/\$TMP}"
    echo "client: scripts/bench-server.py $url --tokens $tokens --requests 8 --concurrency 1,4,8"
    echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
    python3 scripts/bench-server.py "$url" --tokens "$tokens" --requests 8 --concurrency 1,4,8
    echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
    kill -TERM "$server_pid"
    wait "$server_pid" || true
    server_pid=""
    exec 3<&-
    rm -rf "$scratch/2b4t"
done
