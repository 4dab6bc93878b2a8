#!/usr/bin/env bash
# Builds the cargo-fuzz targets in fuzz/ and runs each for SECONDS (default 60), one at a time.
# Prints per target the executions, libFuzzer's coverage (cov: edges, ft: features) and whether
# it crashed; exits non-zero if any target crashed, leaked, timed out or ran out of memory.
#
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
#   FUZZ_RSS_LIMIT_MB   RSS limit per target in MiB (default 1024; png_asset always 512)
#   FUZZ_JOBS           build jobs (default: cargo's)
# New corpus entries go to fuzz/target/corpus/TARGET (ignored); the committed seeds in
# fuzz/corpus/TARGET are only read. Crashing inputs land in fuzz/artifacts/TARGET/.
# The instrumented build goes to fuzz/target, apart from the ordinary build in target/. (Without
# nightly or libFuzzer, `cargo test -p tritlab-fuzz` replays every corpus and mutations of it.)
# docs/FUZZING.md explains the targets, and how to reproduce and minimise a crash.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-60}"
shift || true
rss="${FUZZ_RSS_LIMIT_MB:-1024}"

# libFuzzer's sanitizer flags need a nightly compiler.
if ! rustup toolchain list | grep -q '^nightly'; then
  echo "fuzz.sh: installing the nightly toolchain"
  rustup toolchain install nightly --profile minimal
fi
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "fuzz.sh: installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

# -a: debug assertions, so integer overflow in a reader panics instead of wrapping. The libFuzzer
# binaries are behind the crate's `libfuzzer` feature, so the ordinary workspace build skips them.
fuzz=(--features libfuzzer --target-dir fuzz/target)
build=(cargo +nightly fuzz build -a "${fuzz[@]}")
[[ -n "${FUZZ_JOBS:-}" ]] && build+=(--jobs "$FUZZ_JOBS")
start=$(date +%s)
"${build[@]}"
echo "fuzz.sh: build took $(($(date +%s) - start)) s"

if (($# > 0)); then
  targets=("$@")
else
  mapfile -t targets < <(cargo +nightly fuzz list)
fi

# Extra libFuzzer options per target.
options_for() {
  case "$1" in
    # Quadratic parsing shows up as a timeout on 4 KiB lines.
    command_lang) echo "-max_len=4096 -timeout=2" ;;
    # The reader's caps are 64 Mi pixels and 256 MiB decoded (host/workbook/src/image.rs): no
    # single allocation may be larger, and no PNG may take the process past 768 MiB.
    png_asset) echo "-rss_limit_mb=768 -malloc_limit_mb=300 -timeout=5" ;;
    tokenizer) echo "-timeout=10" ;;
    *) echo "-timeout=10" ;;
  esac
}

logs=fuzz/target/logs
mkdir -p "$logs"
failed=()
printf '\n%-20s %12s %8s %8s  %s\n' target executions cov ft result
summary=()
for target in "${targets[@]}"; do
  work="fuzz/target/corpus/$target"
  mkdir -p "$work" "fuzz/corpus/$target"
  log="$logs/$target.log"
  # shellcheck disable=SC2046
  if cargo +nightly fuzz run -a "${fuzz[@]}" "$target" "$work" "fuzz/corpus/$target" -- \
      -max_total_time="$seconds" -rss_limit_mb="$rss" -print_final_stats=1 \
      $(options_for "$target") >"$log" 2>&1; then
    result=ok
  else
    result="CRASH (see $log; input in fuzz/artifacts/$target/)"
    failed+=("$target")
  fi
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1 || true)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || true)
  ft=$(grep -o 'ft: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || true)
  line=$(printf '%-20s %12s %8s %8s  %s' "$target" "${execs:-?}" "${cov:-?}" "${ft:-?}" "$result")
  echo "$line"
  summary+=("$line")
  if [[ $result != ok ]]; then
    grep -m3 -E "panicked at|ERROR: libFuzzer|ERROR: AddressSanitizer|SUMMARY" "$log" | sed 's/^/    /' || true
  fi
done

printf '\n%-20s %12s %8s %8s  %s\n' target executions cov ft result
printf '%s\n' "${summary[@]}"
if ((${#failed[@]})); then
  echo "fuzz.sh: ${#failed[@]} target(s) failed: ${failed[*]}" >&2
  exit 1
fi
