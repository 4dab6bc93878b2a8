#!/usr/bin/env bash
# Runs every test of the workspace, building what the tests load first.
# Usage: scripts/test.sh   (from anywhere; installs with apt-get only what is missing)
set -euo pipefail
cd "$(dirname "$0")/.."

# Runs a step and prints how long it took, so that a slow run shows where its time went.
timed() {
  local name="$1" start
  shift
  start=$(date +%s)
  "$@"
  echo "test.sh: $name took $(($(date +%s) - start)) s"
}

as_root() {
  if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi
}

# What the tests need besides Rust: nbformat (the exported notebooks are validated against the
# schema) and Mesa's software renderers (the workbench's UI tests draw through lavapipe).
missing=()
/usr/bin/python3 -c 'import nbformat' 2>/dev/null || python3 -c 'import nbformat' 2>/dev/null \
  || missing+=(python3-nbformat)
[[ -e /usr/share/vulkan/icd.d/lvp_icd.x86_64.json || -e /usr/share/vulkan/icd.d/lvp_icd.aarch64.json ]] \
  || missing+=(mesa-vulkan-drivers)
ls /usr/lib/*/dri/swrast_dri.so >/dev/null 2>&1 || missing+=(libgl1-mesa-dri)
ldconfig -p | grep -q 'libEGL.so.1' || missing+=(libegl1)
ldconfig -p | grep -q 'libxkbcommon-x11.so.0' || missing+=(libxkbcommon-x11-0)
if ((${#missing[@]})); then
  echo "test.sh: installing ${missing[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# Skipping the notebook validation is not allowed here: nbformat is installed above.
export TRITLAB_REQUIRE_NBFORMAT=1

# Plugins are WebAssembly components the plugin host's tests load.
if [[ -x scripts/build-plugins.sh ]]; then
  timed plugins scripts/build-plugins.sh
fi

# Guard rails: formatting, then every lint as an error (workspace lints forbid `unsafe` outside
# the kernels and the plugin host; see Cargo.toml).
for component in rustfmt clippy; do
  rustup component list --installed 2>/dev/null | grep -q "^$component" \
    || rustup component add "$component"
done
cargo fmt --all --check
target_dir="${CARGO_TARGET_DIR:-target}"
# One build of what the tests run (libraries, binaries, tests, examples) with one feature
# resolution: the workbook runner and the GUI smoke test below use the binaries it makes instead of
# building the stack again with the smaller feature sets a `-p` build would resolve.
build=(cargo build --workspace --release --locked --lib --bins --tests --examples)
if [[ -d "$target_dir/release/.fingerprint" ]]; then
  # Built before: `cargo clippy` checks what changed, against dependencies it checked before. The
  # benches are linted here and not built: each links the whole graph again.
  timed clippy cargo clippy --workspace --release --locked --all-targets -- -D warnings
  timed build "${build[@]}"
  timed test cargo test --workspace --release --locked
else
  # A first build (CI's clean clone): the workspace's crates are compiled by clippy's driver,
  # which lints them as it compiles them, so the ~700 dependencies are compiled once instead of
  # being checked for clippy first. Only for a fresh target: cargo would take a crate compiled
  # earlier without the driver as up to date, and skip its lints. The benches are built too, so
  # that they are linted; the tests run with the same driver (cargo compiles again what a
  # different one compiled), so nothing is compiled twice.
  clippy_driver="$(rustc --print sysroot)/bin/clippy-driver"
  [[ -x "$clippy_driver" ]] || { echo "test.sh: no clippy-driver at $clippy_driver" >&2; exit 1; }
  # The driver comes through cargo's configuration, not RUSTC_WORKSPACE_WRAPPER: the tests
  # inherit the environment, and the Rust cells' tests run cargo themselves, which would lint
  # the cells' code as errors. CLIPPY_ARGS alone (the driver's flags) does nothing to them.
  driver=(--config "build.rustc-workspace-wrapper=\"$clippy_driver\"")
  export CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"
  timed build-and-clippy cargo "${driver[@]}" "${build[@]:1}" --bench '*'
  timed test cargo "${driver[@]}" test --workspace --release --locked
  unset CLIPPY_ARGS
fi
# The `cuda` feature (training on NVIDIA GPUs, docs/GPU.md) type-checked, so the GPU path cannot rot
# on machines without one. candle's CUDA kernels are not compiled (see the script). On by default
# in CI; elsewhere set TRITLAB_CHECK_CUDA=1.
if [[ "${TRITLAB_CHECK_CUDA:-${CI:-}}" == "1" || "${TRITLAB_CHECK_CUDA:-${CI:-}}" == "true" ]]; then
  timed cuda-check scripts/build-cuda.sh --check
fi

# Every shipped workbook, run headless and exported to HTML, ipynb (validated) and Markdown.
TRITLAB_BIN="$target_dir/release/tritlab" timed workbooks scripts/run-workbooks.sh
# The Jupyter kernel under jupyter_client and nbclient (from PyPI), on the notebooks just exported.
TRITLAB_BIN="$target_dir/release/tritlab" timed jupyter scripts/test-jupyter.sh
# `tritlab serve` under the official OpenAI Python client (from PyPI): streamed completions and
# chat completions equal `tritlab generate` / `tritlab chat`, errors, SIGTERM.
TRITLAB_BIN="$target_dir/release/tritlab" timed server scripts/test-server.sh

# The NEON kernels, checked against the scalar reference under qemu-user, and the workbench in a
# real window under Xvfb. On by default in CI; elsewhere set TRITLAB_TEST_AARCH64=1 and
# TRITLAB_TEST_GUI=1.
ci="${CI:-}"
if [[ "${TRITLAB_TEST_AARCH64:-$ci}" == "1" || "${TRITLAB_TEST_AARCH64:-$ci}" == "true" ]]; then
  timed aarch64 scripts/test-aarch64.sh
fi
if [[ "${TRITLAB_TEST_GUI:-$ci}" == "1" || "${TRITLAB_TEST_GUI:-$ci}" == "true" ]]; then
  SMOKE_BINARY="$target_dir/release/examples/workbench" timed gui-smoke scripts/gui-smoke.sh
fi
# The tests above replay every fuzz target's corpus and mutations of it (fuzz/tests/replay.rs).
# Coverage-guided libFuzzer runs need nightly and a sanitizer build of the whole stack (about
# 20 minutes on two cores): set TRITLAB_FUZZ_SECONDS=N to run each target N seconds after the tests.
fuzz_seconds="${TRITLAB_FUZZ_SECONDS:-0}"
if [[ "$fuzz_seconds" != "0" ]]; then
  timed fuzz scripts/fuzz.sh "$fuzz_seconds"
fi
