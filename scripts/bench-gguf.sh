#!/usr/bin/env bash
# tritlab on GGUF: resident memory and speed of a BitNet b1.58 2B-4T-shaped model in every GGUF
# format tritlab writes (TQ2_0, TQ1_0, I2_S), against the file's size and against the same
# weights loaded from the Hugging Face checkpoint. Prints a Markdown table.
#
#   scripts/bench-gguf.sh > gguf.md
#
# The model is random (`tritlab synth --shape bitnet-2b4t --seed 1`); each GGUF is its
# `tritlab convert … --to gguf-FORMAT` (F16 embedding). Each row is one process running
# `tritlab --threads T bench --model M --prompt 64 --tokens 64 --repeat R --json`, so its peak
# resident memory (VmHWM) covers loading the file and the runs, the KV cache included. The
# target is a peak of at most 1.1× the file: the engine maps the file and keeps float matrices
# in it, and copies only the ternary matrices into the kernels' layout.
#
# The output head is what the command line loads by default (int8) unless TRITLAB_BENCH_HEAD
# names another: `exact` multiplies the stored embedding (F16 in the GGUF files, bf16 in the
# checkpoint) in place; `bf16`, `int8`, `q6` and `q4` convert it at load. The head is printed
# under the table.
#
# Environment: TRITLAB_BENCH_HEAD (exact, bf16, int8, q6 or q4; default: the command line's
# default head), TRITLAB_BENCH_THREADS (default: all CPUs), TRITLAB_BENCH_REPEAT (default 3),
# TRITLAB_BENCH_DIR (models, default target/bench), TRITLAB_SKIP_BUILD=1 (use the
# target/release/tritlab already built, e.g. by `cargo build --release -p tritlab`, instead of
# building the whole workspace first).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
threads=${TRITLAB_BENCH_THREADS:-$(nproc)}
repeat=${TRITLAB_BENCH_REPEAT:-3}
work=${TRITLAB_BENCH_DIR:-$root/target/bench}
head=${TRITLAB_BENCH_HEAD:-}
head_args=()
if [ -n "$head" ]; then
  head_args=(--head-precision "$head")
fi
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
if [ "${TRITLAB_SKIP_BUILD:-0}" = 1 ]; then
  echo "TRITLAB_SKIP_BUILD=1: using the tritlab already in target/release" >&2
else
  echo "building tritlab (cargo build --release --locked --workspace --all-targets, as CI does)" >&2
  cargo build --release --locked --workspace --all-targets >&2
fi
tritlab=$root/target/release/tritlab
if [ ! -x "$tritlab" ]; then
  echo "error: $tritlab is not built (cargo build --release -p tritlab)" >&2
  exit 1
fi
mkdir -p "$work"
model=$work/b2b4t
if [ ! -f "$model/model.safetensors" ]; then
  "$tritlab" synth --shape bitnet-2b4t --seed 1 --out "$model" >&2
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

bench() { # NAME MODEL
  echo "tritlab bench on $1" >&2
  "$tritlab" --threads "$threads" bench --model "$2" ${head_args[@]+"${head_args[@]}"} \
    --prompt 64 --tokens 64 --repeat "$repeat" --json >"$out/$1.json"
}
sizes=()
bench hf "$model"
sizes+=("hf=$(stat -c %s "$model/model.safetensors")")
for f in tq2_0 tq1_0 i2_s; do
  g=$work/b2b4t-$f.gguf
  if [ ! -f "$g" ] || [ "$g" -ot "$model/model.safetensors" ]; then
    echo "tritlab convert --to gguf-$f" >&2
    "$tritlab" convert "$g" --model "$model" --head-precision exact --to "gguf-$f" >&2
  fi
  bench "$f" "$g"
  sizes+=("$f=$(stat -c %s "$g")")
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
head_note=${head:-"not given: the command line default"}

python3 - "$out" "${sizes[@]}" <<'PY'
import json, os, sys
out = sys.argv[1]
sizes = dict(s.split("=") for s in sys.argv[2:])
label = {"hf": "HF safetensors (packed uint8 + bf16)", "tq2_0": "GGUF TQ2_0", "tq1_0": "GGUF TQ1_0",
         "i2_s": "GGUF I2_S"}
print("| format | file MB | peak RSS MB | peak / file | weights in memory MB | prefill tok/s | decode tok/s |")
print("| --- | --- | --- | --- | --- | --- | --- |")
base = None
for name in ["hf", "tq2_0", "tq1_0", "i2_s"]:
    rows = {r[0]: r for r in json.load(open(os.path.join(out, f"{name}.json")))[0]["value"]["rows"]}
    size = int(sizes[name])
    peak = rows["peak resident memory"][1]
    peak_s, ratio = ("unknown", "")
    if peak.isdigit():
        peak_s, ratio = f"{int(peak) / 1e6:.1f}", f"{int(peak) / size:.3f}×"
    speed = lambda p: f"{rows[p][1]} ({rows[p][2]}–{rows[p][3]})"
    print(f"| {label[name]} | {size / 1e6:.1f} | {peak_s} | {ratio} | {int(rows['weights'][1]) / 1e6:.1f} "
          f"| {speed('prefill')} | {speed('decode')} |")
    threads, runs, head = rows["threads"][1], rows["runs"][1], rows["output head"][1]
print()
print(f"{threads} thread(s), output head {head}; median tokens/s over {runs} runs (min–max): a 64-token "
      "prompt in one pass, then 64 tokens decoded one at a time; peak RSS = VmHWM of the process "
      "(load + runs).")
PY
cat <<EOF

- machine: $(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -1), $(nproc) CPUs; date $(date -u +%Y-%m-%dT%H:%MZ)
- output head: $head_note
- load average (1, 5, 15 min) before: $load_before; after: $load_after
- tritlab $(git rev-parse --short HEAD 2>/dev/null || echo unknown); model: random weights of microsoft/bitnet-b1.58-2B-4T's shape (\`tritlab synth --shape bitnet-2b4t --seed 1\`)
EOF
