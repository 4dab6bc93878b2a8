#!/usr/bin/env bash
# Training on a CUDA GPU, measured on the GPU machine with what scripts/build-cuda.sh made:
#
#   scripts/bench-gpu-train.sh BIN_DIR DATA_DIR OUT_DIR
#
# BIN_DIR holds tritlab-cuda(.gz) and train-step-bench-cuda(.gz); DATA_DIR holds WikiText-2's
# test.txt and valid.txt and the GPT-2 tokenizer.json (the shared data folder's files). It prints,
# and writes into OUT_DIR:
#   1. the training-step benchmark on the GPU: the small preset and a 125M-parameter shape at
#      sequence 512, by phase, with tokens/s and model FLOPs utilisation against PEAK_TFLOPS
#      (default 989: the H100/H200's dense bf16 rate, the figure MFU is usually quoted against):
#      the step with the world on the GPU (what `train --device cuda` runs), then, unless
#      HOST_WORLD=0, with the world on the host (GPU runs recorded before) and the f32 step;
#      MATMULS="tf32 bf16" adds the world-on-GPU step with those products (`train --matmul`);
#   2. determinism: the same run twice on the GPU gives the same world hashes, and
#      `replay verify` recomputes it bit for bit there; with f32 products, then with each of
#      DETERMINISM_MATMULS (default "tf32": `train --matmul tf32`, which replay takes from run.json);
#   3. GPU against CPU: the WikiText-2 setting (small preset, GPT-2 tokenizer, 16 × 128 tokens,
#      training on test.txt, validating on valid.txt) for STEPS steps on both, loss per step and
#      validation perplexity side by side, and the CPU's check of the GPU run (trit chain, losses);
#   4. micro-batches over the GPUs: the 125M shape at sequence 512, batch 16, in MICRO micro-batches
#      (default 2 × the GPU count) on the first GPU alone, then data-parallel over every GPU
#      (`--devices 0,1,…`, NCCL): the two morphism logs must be byte-identical, the tokens/s of each
#      and their ratio are printed, and `replay verify` recomputes the data-parallel run on one GPU.
#      With one GPU the second run is NCCL with a single rank. Then `--devices 0` with one
#      micro-batch against stage 2's plain run: the exchange adds nothing to the bits.
#   5. `train` itself: 30 steps (LOOP_STEPS) of the small preset at 16 × 128 and of the 125M shape at
#      16 × 512, without evaluation and with checkpoints only at the ends, so that its tokens/s
#      (start-up, morphism log and final checkpoint included) can be set beside stage 1's step.
# STAGES (default "1 2 3 4") picks the stages; stages 3 and 4 compare with stage 2's first run.
set -euo pipefail

bin_dir="$(cd "$1" && pwd)"
data="$(cd "$2" && pwd)"
out="$(mkdir -p "$3" && cd "$3" && pwd)"
peak="${PEAK_TFLOPS:-989}"
steps="${STEPS:-20}"
work="$(mktemp -d)"

for name in tritlab train-step-bench; do
  if [[ -f "$bin_dir/$name-cuda.gz" ]]; then
    gunzip -c "$bin_dir/$name-cuda.gz" > "$work/$name"
  else
    cp "$bin_dir/$name-cuda" "$work/$name"
  fi
  chmod +x "$work/$name"
done
tritlab="$work/tritlab"

# The driver's libcuda and the CUDA 13 libraries (cuBLAS, cuRAND, NVRTC) of the machine's PyTorch.
if [[ -z "${TRITLAB_CUDA_LIBS:-}" ]]; then
  TRITLAB_CUDA_LIBS="$(python3 -c 'import os, nvidia; print(os.path.join(list(nvidia.__path__)[0], "cu13", "lib"))')"
fi
# NCCL (libnccl.so.2, data parallelism): PyTorch's copy, wherever its NVIDIA packages put it.
if [[ -z "${TRITLAB_NCCL_LIBS:-}" ]]; then
  TRITLAB_NCCL_LIBS="$(python3 -c '
import glob, os, nvidia
hits = [os.path.dirname(p) for d in nvidia.__path__ for p in glob.glob(os.path.join(d, "**", "libnccl.so.2"), recursive=True)]
print(hits[0] if hits else "")')"
fi
export LD_LIBRARY_PATH="$TRITLAB_CUDA_LIBS:$TRITLAB_NCCL_LIBS:/usr/local/nvidia/lib64:${LD_LIBRARY_PATH:-}"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"

stages=" ${STAGES:-1 2 3 4} "
stage() { [[ "$stages" == *" $1 "* ]]; }

if stage 1; then
echo "== 1. the training step, by phase" | tee "$out/bench.txt"
bench() {
  env TRITLAB_BENCH_DEVICE=cuda:0 TRITLAB_BENCH_PEAK_TFLOPS="$peak" TRITLAB_BENCH_STEPS=4 \
    TRITLAB_BENCH_SEQ=512 "$@" "$work/train-step-bench" 2>&1 | tee -a "$out/bench.txt" \
    || echo "(this benchmark failed)" | tee -a "$out/bench.txt"
}
shape_125m=(TRITLAB_BENCH_LAYERS=12 TRITLAB_BENCH_HIDDEN=768 TRITLAB_BENCH_INTERMEDIATE=2048
  TRITLAB_BENCH_HEADS=12 TRITLAB_BENCH_KV_HEADS=12)
# Each prints the step with the world on the GPU (what `train --device cuda` runs) first, then,
# unless HOST_WORLD=0, the step with the world on the host (runs from before) and the f32 step.
host_world=(TRITLAB_BENCH_HOST_WORLD="${HOST_WORLD:-1}")
bench TRITLAB_BENCH_PRESET=small TRITLAB_BENCH_BATCH=16 "${host_world[@]}"
[[ "${SKIP_125M:-0}" == 1 ]] || bench TRITLAB_BENCH_PRESET=small TRITLAB_BENCH_BATCH=16 "${shape_125m[@]}" "${host_world[@]}"
# MATMULS="tf32 bf16": the step with the world on the GPU again with those products
# (`train --matmul`).
for mm in ${MATMULS:-}; do
  bench TRITLAB_BENCH_PRESET=small TRITLAB_BENCH_BATCH=16 TRITLAB_BENCH_MATMUL="$mm" TRITLAB_BENCH_HOST_WORLD=0
  [[ "${SKIP_125M:-0}" == 1 ]] || bench TRITLAB_BENCH_PRESET=small TRITLAB_BENCH_BATCH=16 "${shape_125m[@]}" \
    TRITLAB_BENCH_MATMUL="$mm" TRITLAB_BENCH_HOST_WORLD=0
done

fi

wiki=(--data "$data/test.txt" --val "$data/valid.txt" --tokenizer "$data/tokenizer.json"
  --preset small --seq 128 --batch 16 --steps "$steps" --checkpoint-every 10
  --eval-every 10 --eval-sequences 32)

if stage 2 || stage 3; then
echo "== 2. determinism on the GPU" | tee "$out/determinism.txt"
# Twice each, then `replay verify` of the first: f32 products (gpu-a, gpu-b), then each of
# DETERMINISM_MATMULS (gpu-tf32-a, gpu-tf32-b …).
for mm in f32 ${DETERMINISM_MATMULS-tf32}; do
  tag=gpu; flags=()
  if [[ "$mm" != f32 ]]; then tag="gpu-$mm"; flags=(--matmul "$mm"); fi
  echo "-- $mm products" | tee -a "$out/determinism.txt"
  for run in a b; do
    "$tritlab" train "${wiki[@]}" "${flags[@]}" --device cuda:0 --out "$work/$tag-$run" 2>&1 | tail -3 | tee -a "$out/determinism.txt"
  done
  # The morphism log holds every step's world hashes, loss and trit flips, and no timestamps.
  if cmp -s "$work/$tag-a/morphisms.tml" "$work/$tag-b/morphisms.tml"; then
    echo "two GPU runs ($mm): byte-identical morphism logs (every world hash, loss and flip equal)" | tee -a "$out/determinism.txt"
  else
    echo "two GPU runs ($mm): the morphism logs DIFFER" | tee -a "$out/determinism.txt"
    diff <("$tritlab" log "$work/$tag-a") <("$tritlab" log "$work/$tag-b") | head -20 | tee -a "$out/determinism.txt" || true
  fi
  "$tritlab" replay verify --run "$work/$tag-a" 2>&1 | tail -2 | tee -a "$out/determinism.txt"
done
for run in gpu-a; do
  cp "$work/$run/metrics.jsonl" "$out/metrics-$run.jsonl"
  cp "$work/$run/run.json" "$out/run-$run.json"
done
fi

if stage 3; then
echo "== 3. the same run on the CPU ($(nproc) threads)" | tee "$out/cpu-vs-gpu.txt"
# Bounded, so that a slow CPU still leaves time for the rest: the steps it finished are compared.
timeout "${CPU_SECONDS:-600}" "$tritlab" train "${wiki[@]}" --out "$work/cpu" 2>&1 | tail -3 \
  | tee -a "$out/cpu-vs-gpu.txt" || echo "(the CPU run was stopped after ${CPU_SECONDS:-600} s)" | tee -a "$out/cpu-vs-gpu.txt"
cp "$work/cpu/metrics.jsonl" "$out/metrics-cpu.jsonl"
cp "$work/cpu/run.json" "$out/run-cpu.json"
python3 - "$work/gpu-a/metrics.jsonl" "$work/cpu/metrics.jsonl" <<'PY' | tee -a "$out/cpu-vs-gpu.txt"
import json, sys
def read(p):
    steps, evals = {}, {}
    for line in open(p):
        r = json.loads(line)
        if "learning_rate" in r:
            steps[r["step"]] = r["loss"]
        if r.get("val_perplexity") is not None:
            evals[r["step"]] = r["val_perplexity"]
    return steps, evals
(gs, ge), (cs, ce) = read(sys.argv[1]), read(sys.argv[2])
print("step  loss GPU   loss CPU   |diff|")
worst = 0.0
for s in sorted(set(gs) & set(cs)):
    d = abs(gs[s] - cs[s]); worst = max(worst, d)
    print(f"{s:4d}  {gs[s]:.5f}  {cs[s]:.5f}  {d:.2e}")
print(f"largest loss difference: {worst:.2e}")
for s in sorted(set(ge) & set(ce)):
    print(f"validation perplexity at step {s}: GPU {ge[s]:.3f}, CPU {ce[s]:.3f} ({100*(ge[s]/ce[s]-1):+.3f}%)")
PY
echo "-- the GPU run checked on the CPU" | tee -a "$out/cpu-vs-gpu.txt"
"$tritlab" replay verify --run "$work/gpu-a" --device cpu --to "${CHECK_TO:-$steps}" 2>&1 | tail -2 | tee -a "$out/cpu-vs-gpu.txt" || true
fi
if stage 5; then
echo "== 5. the train command" | tee "$out/train-loop.txt"
for shape in "small 128" "125m 512"; do
  set -- $shape
  extra=()
  [[ "$1" == 125m ]] && extra=(--layers 12 --hidden 768 --intermediate 2048 --heads 12 --kv-heads 12)
  echo "-- $1 shape, 16 × $2 tokens a step" | tee -a "$out/train-loop.txt"
  "$tritlab" train --data "$data/test.txt" --val "$data/valid.txt" --tokenizer "$data/tokenizer.json" \
    --preset small "${extra[@]}" --device cuda:0 --seq "$2" --batch 16 --steps "${LOOP_STEPS:-30}" \
    --checkpoint-every 100000 --eval-sequences 4 --out "$work/loop-$1" 2>&1 | grep "steps in" | tee -a "$out/train-loop.txt"
done
fi

if stage 4; then
echo "== 4. micro-batches and data parallelism" | tee "$out/data-parallel.txt"
gpus="$(nvidia-smi -L | wc -l)"
list="$(seq -s, 0 $((gpus - 1)))"
micro="${MICRO:-$((2 * gpus))}"
shape=(--data "$data/test.txt" --val "$data/valid.txt" --tokenizer "$data/tokenizer.json"
  --preset small --layers 12 --hidden 768 --intermediate 2048 --heads 12 --kv-heads 12
  --seq 512 --batch 16 --steps "${DP_STEPS:-24}" --checkpoint-every 1000 --eval-sequences 8
  --micro-batches "$micro")
echo "-- $micro micro-batches on cuda:0 alone" | tee -a "$out/data-parallel.txt"
"$tritlab" train "${shape[@]}" --device cuda:0 --out "$work/dp-one" 2>&1 | tail -3 | tee -a "$out/data-parallel.txt"
echo "-- $micro micro-batches over --devices $list" | tee -a "$out/data-parallel.txt"
"$tritlab" train "${shape[@]}" --devices "$list" --out "$work/dp-all" 2>&1 | tail -3 | tee -a "$out/data-parallel.txt"
if cmp -s "$work/dp-one/morphisms.tml" "$work/dp-all/morphisms.tml"; then
  echo "one GPU and $gpus GPU(s): byte-identical morphism logs" | tee -a "$out/data-parallel.txt"
else
  echo "one GPU and $gpus GPU(s): the morphism logs DIFFER" | tee -a "$out/data-parallel.txt"
fi
python3 - "$out/data-parallel.txt" <<'PY' | tee -a "$out/data-parallel.txt"
import re, sys
rates = [float(m) for m in re.findall(r"\(([0-9.]+) tokens/s\)", open(sys.argv[1]).read())]
if len(rates) >= 2:
    print(f"tokens/s: {rates[0]:.0f} on one GPU, {rates[1]:.0f} data-parallel ({rates[1] / rates[0]:.2f}x)")
PY
"$tritlab" replay verify --run "$work/dp-all" 2>&1 | tail -1 | tee -a "$out/data-parallel.txt"
cp "$work/dp-all/run.json" "$out/run-dp.json"
if [[ -d "$work/gpu-a" ]]; then
  echo "-- --devices 0 with one micro-batch against stage 2's plain run" | tee -a "$out/data-parallel.txt"
  "$tritlab" train "${wiki[@]}" --devices 0 --out "$work/dp-plain" 2>&1 | tail -3 | tee -a "$out/data-parallel.txt"
  if cmp -s "$work/gpu-a/morphisms.tml" "$work/dp-plain/morphisms.tml"; then
    echo "through NCCL and without: byte-identical morphism logs" | tee -a "$out/data-parallel.txt"
  else
    echo "through NCCL and without: the morphism logs DIFFER" | tee -a "$out/data-parallel.txt"
  fi
fi
fi
rm -rf "$work"
