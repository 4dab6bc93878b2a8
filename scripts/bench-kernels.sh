#!/usr/bin/env bash
# Runs the kernel benchmark N times (default 2), printing the load average before and after each run:
# on a shared machine the bandwidth and the kernels' share of the cores drift, so figures are only
# comparable next to the load they were taken under.
#   scripts/bench-kernels.sh [runs] [extra cargo bench args...]
# Environment (passed through): TRITLAB_BENCH_SECTIONS, TRITLAB_BENCH_FILTER, TRITLAB_BENCH_SECONDS,
# TRITLAB_BENCH_COLD_MB, TRITLAB_KERNEL, TRITLAB_HUGE_PAGES, TRITLAB_TUNE.
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-2}"
shift || true
cargo bench -p tritlab-kernels --bench kernels --no-run "$@"
for i in $(seq 1 "$runs"); do
    echo "== run $i/$runs, load before: $(cut -d' ' -f1-3 /proc/loadavg)"
    cargo bench -p tritlab-kernels --bench kernels "$@" 2>/dev/null
    echo "== run $i/$runs, load after: $(cut -d' ' -f1-3 /proc/loadavg)"
done
