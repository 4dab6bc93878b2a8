#!/usr/bin/env bash
# Runs the kernel crate's tests for AArch64 under qemu-user, so the NEON path is checked against
# the scalar reference on an x86-64 machine. Needs Debian's rustc-web and rust-web-src (a rustc
# that can build std for other targets), an AArch64 cross linker and qemu-user; installs them
# with apt-get when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
[[ -x /usr/bin/rustc && -d /usr/lib/rustlib/src/rust/library ]] || need+=(rustc-web cargo-web rust-web-src)
command -v aarch64-linux-gnu-gcc >/dev/null || need+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
command -v qemu-aarch64 >/dev/null || need+=(qemu-user)
if ((${#need[@]})); then
  echo "installing: ${need[*]}"
  sudo=()
  if [[ $EUID -ne 0 ]] && command -v sudo >/dev/null; then sudo=(sudo); fi
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi

export RUSTC_BOOTSTRAP=1 RUSTC=/usr/bin/rustc
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}/cross-aarch64"
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu"
/usr/bin/cargo test -Zbuild-std=core,std,alloc,panic_unwind,proc_macro \
  --target aarch64-unknown-linux-gnu -p tritlab-kernels --release --lib --tests
