#!/usr/bin/env bash
# Builds tritlab with CUDA training (`tritlab train --device cuda`) on a machine that has neither a
# GPU nor a CUDA toolkit, for a GPU machine that has the NVIDIA driver and CUDA libraries but no Rust:
#
#   1. NVIDIA's CUDA 13.0 compiler (nvcc, its NVVM back end and its crt headers), headers (CCCL) and
#      runtime, as the Python wheels NVIDIA publishes on PyPI, unpacked into target/cuda-toolkit. The 13.0 series, so that the PTX candle compiles is
#      not newer than what a CUDA 13.0 driver loads.
#   2. Link-time stubs of the libraries candle links by name (the driver, cuBLAS, cuBLASLt, cuRAND,
#      NVRTC, NCCL), made from the function names cudarc declares: the real libraries are on the GPU
#      machine and are found there at run time.
#   3. `cargo build --release --features cuda` into target/cuda, with kernels for compute capability
#      CUDA_COMPUTE_CAP (default 90, Hopper).
#   4. A stripped, gzipped copy, target/cuda/tritlab-cuda.gz, to carry to the GPU machine.
#
# Usage: scripts/build-cuda.sh           build the binary (steps 1-4)
#        scripts/build-cuda.sh --check   only type-check the `cuda` feature; CI runs this
#
# --check needs neither the toolkit nor the stubs: type-checking links nothing, and the only
# CUDA C++ it would compile is candle's own kernels (candle-kernels' build script: PTX, and a
# static library of quantised-matmul kernels that takes nvcc most of a quarter of an hour on two
# cores). A stand-in `nvcc` writes those outputs empty, so the check costs what checking the Rust
# code costs, in the main target directory, where the build scripts and procedural macros of the
# ordinary build are reused. Only the real build above compiles candle's kernels.
# On the GPU machine: gunzip it, and run it with LD_LIBRARY_PATH holding the directories of
# libcuda.so.1 and of the CUDA 13 libraries (libcublas.so.13 …), e.g. a PyTorch environment's
# nvidia/cu13/lib. See docs/GPU.md.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
mode="${1:-build}"
case "$mode" in
  build | --check) ;;
  *) echo "usage: scripts/build-cuda.sh [--check]" >&2; exit 2 ;;
esac

target="${CARGO_TARGET_DIR:-$repo/target}"
cuda_version="13.0"

if [[ "$mode" == "--check" ]]; then
  stand_in="$target/cuda-check/bin"
  mkdir -p "$stand_in"
  # What candle-kernels' build script (through cudaforge) asks of nvcc: its version, its GPU
  # codes, PTX into --output-directory, objects and a library at -o. Every output is empty.
  cat >"$stand_in/nvcc" <<'SH'
#!/usr/bin/env bash
# A stand-in for nvcc used by `scripts/build-cuda.sh --check`: writes empty outputs.
out="" dir="" sources=()
while (($#)); do
  case "$1" in
    --version) echo "Cuda compilation tools, release 13.0, V13.0.0 (type-check stand-in)"; exit 0 ;;
    --list-gpu-code) printf 'sm_80\nsm_90\n'; exit 0 ;;
    -o) out="$2"; shift ;;
    --output-directory) dir="$2"; shift ;;
    *.cu) sources+=("$1") ;;
  esac
  shift
done
if [[ -n "$out" ]]; then
  case "$out" in
    *.a) ar rcs "$out" ;;
    *) : >"$out" ;;
  esac
fi
for source in "${sources[@]}"; do
  [[ -n "$dir" ]] && { name="${source##*/}"; : >"$dir/${name%.cu}.ptx"; }
done
exit 0
SH
  chmod +x "$stand_in/nvcc"
  export NVCC="$stand_in/nvcc" PATH="$stand_in:$PATH"
  export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
  export CUDARC_CUDA_VERSION="${cuda_version%%.*}0${cuda_version#*.}0"
  export TRITLAB_CUDA_TOOLKIT="$cuda_version"
  exec cargo check --release --locked -p tritlab-train --features cuda --all-targets
fi
toolkit="${TRITLAB_CUDA_TOOLKIT_DIR:-$target/cuda-toolkit}"
root="$toolkit/nvidia/cu13"

# 1. The toolkit from PyPI, kept between runs.
if [[ ! -x "$root/bin/nvcc" || ! -f "$root/include/crt/host_config.h" ]]; then
  echo "build-cuda: fetching NVIDIA's CUDA $cuda_version compiler and headers from PyPI" >&2
  wheels="$toolkit/wheels"
  mkdir -p "$wheels"
  # pip: the system's, else a virtual environment's.
  pip=(python3 -m pip)
  if ! python3 -m pip --version >/dev/null 2>&1; then
    source scripts/clients.sh
    python_venv "$toolkit/venv" pip
    pip=("$toolkit/venv/bin/python" -m pip)
  fi
  "${pip[@]}" download --disable-pip-version-check --quiet --no-deps --only-binary=:all: --dest "$wheels" \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux_2_12_x86_64 --platform manylinux2010_x86_64 \
    "nvidia-cuda-nvcc==$cuda_version.*" "nvidia-cuda-runtime==$cuda_version.*" \
    "nvidia-cuda-cccl==$cuda_version.*" "nvidia-nvvm==$cuda_version.*" "nvidia-cuda-crt==$cuda_version.*"
  for wheel in "$wheels"/*.whl; do
    python3 -m zipfile -e "$wheel" "$toolkit"
  done
  chmod +x "$root"/bin/* "$root"/nvvm/bin/*
  # nvcc looks for headers and libraries under targets/x86_64-linux, as in NVIDIA's installers.
  mkdir -p "$root/targets"
  ln -sfn .. "$root/targets/x86_64-linux"
  ln -sfn lib "$root/lib64"
  ln -sfn libcudart.so.13 "$root/lib/libcudart.so"
fi

# 2. Stubs of the linked libraries, from cudarc's declarations (its version is in Cargo.lock).
stubs="$root/lib/stubs"
cudarc_dir="$(cargo metadata --locked --format-version 1 --manifest-path host/train/Cargo.toml \
  --features cuda | python3 -c '
import json, os, sys
meta = json.load(sys.stdin)
dirs = [os.path.dirname(p["manifest_path"]) for p in meta["packages"] if p["name"] == "cudarc"]
print(dirs[0] if dirs else "")')"
[[ -n "$cudarc_dir" ]] || { echo "build-cuda: cudarc is not in the dependency graph" >&2; exit 1; }
# Made again when cudarc or the list of libraries below changes.
stub_key="$cudarc_dir: cuda cublas cublasLt curand nvrtc nccl"
if [[ ! -f "$stubs/.from" || "$(cat "$stubs/.from")" != "$stub_key" ]]; then
  mkdir -p "$stubs"
  python3 - "$cudarc_dir/src" "$stubs" <<'PY'
import re, subprocess, sys, pathlib
src, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
# library (link name) -> (cudarc module, soname on the GPU machine)
libs = {
    "cuda": ("driver", "libcuda.so.1"),
    "cublas": ("cublas", "libcublas.so.13"),
    "cublasLt": ("cublaslt", "libcublasLt.so.13"),
    "curand": ("curand", "libcurand.so.10"),
    "nvrtc": ("nvrtc", "libnvrtc.so.13"),
    "nccl": ("nccl", "libnccl.so.2"),
}
for link, (module, soname) in libs.items():
    names = set()
    for f in (src / module / "sys").glob("*.rs"):
        names.update(re.findall(r"\bfn\s+([A-Za-z_][A-Za-z0-9_]*)\s*\(", f.read_text()))
    names = sorted(n for n in names if not n.startswith("_"))
    c = out / f"{link}.c"
    c.write_text("".join(f"void {n}(void) {{}}\n" for n in names))
    subprocess.run(["cc", "-shared", "-fPIC", f"-Wl,-soname,{soname}", "-o",
                    str(out / f"lib{link}.so"), str(c)], check=True)
    print(f"build-cuda: stub lib{link}.so ({soname}): {len(names)} functions", file=sys.stderr)
PY
  echo "$stub_key" > "$stubs/.from"
fi

export CUDA_ROOT="$root"
export PATH="$root/bin:$PATH"
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
# cudarc spells 13.0 as 13000.
export CUDARC_CUDA_VERSION="${cuda_version%%.*}0${cuda_version#*.}0"
export TRITLAB_CUDA_TOOLKIT="$cuda_version"
# A target directory of its own: the `cuda` feature changes candle, and with it everything above.
export CARGO_TARGET_DIR="$target/cuda"

cargo build --release --locked -p tritlab --features cuda
# The training-step benchmark too (phases, tokens/s, model FLOPs utilisation on the GPU).
bench="$(cargo build --release --locked -p tritlab-train --features cuda --bench train_step \
  --message-format json | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "train_step" and m.get("executable"):
        print(m["executable"])')"
for pair in "tritlab:$CARGO_TARGET_DIR/release/tritlab" "train-step-bench:$bench"; do
  name="${pair%%:*}"
  strip -o "$CARGO_TARGET_DIR/$name-cuda" "${pair#*:}"
  gzip -9 -f "$CARGO_TARGET_DIR/$name-cuda"
  ls -la "$CARGO_TARGET_DIR/$name-cuda.gz"
done
