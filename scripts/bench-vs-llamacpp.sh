#!/usr/bin/env bash
# tritlab against upstream llama.cpp, on this machine, on one model of BitNet b1.58 2B-4T's
# shape: prefill (a 64-token prompt in one pass) and decode (64 tokens, one at a time) tokens/s
# at 1 and 2 threads, printed as a Markdown table with the machine's facts.
#
#   scripts/bench-vs-llamacpp.sh > bench.md
#
# 1. builds tritlab (release) and llama.cpp (scripts/llamacpp.sh, once);
# 2. writes a random checkpoint of the 2B-4T shape (`tritlab synth`), and the same weights as a
#    TQ2_0 GGUF with F16 embedding through the `gguf` package's own quantiser
#    (scripts/bitnet-to-gguf.py), so that llama.cpp does not depend on tritlab's writer;
# 3. runs, back to back for each thread count, `llama-bench -p 64 -n 64 -t T -r R -o json` and
#    `tritlab --threads T bench --prompt 64 --tokens 64 --repeat R --json`, once per entry of
#    TRITLAB_HEADS (an output-head precision, with `:t1` for the T1 packing of the ternary
#    layers);
# 4. prints the table: median tokens/s (min–max over the repetitions) and tritlab / llama.cpp.
#
# Environment: TRITLAB_HEADS (space-separated output-head precisions, each optionally with
# `:t1` for `--packing t1`; default "bf16 int8 q6 q4 bf16:t1 int8:t1 q4:t1": bf16 is like for like
# with llama.cpp's 16-bit embedding, int8 with I2 is tritlab's default),
# TRITLAB_BENCH_THREADS (default "1 2"), TRITLAB_BENCH_REPEAT
# (default 5), TRITLAB_BENCH_DIR (models, default target/bench), TRITLAB_SKIP_BUILD=1 (use the
# target/release/tritlab already built instead of building the workspace first), and those of
# llamacpp.sh.
#
# What differs between the two, and is not hidden: llama-bench's decode test starts from an
# empty context while tritlab's decodes after the prompt (positions 64..127; attention over a
# few dozen more positions is a small share of a 2B model's step); llama.cpp keeps its KV cache
# in F16 and tritlab in F32; llama.cpp runs the checkpoint as its SiLU `bitnet` graph, tritlab as
# the checkpoint says (squared ReLU) — the same cost per token.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
heads=${TRITLAB_HEADS:-bf16 int8 q6 q4 bf16:t1 int8:t1 q4:t1}
threads=${TRITLAB_BENCH_THREADS:-1 2}
repeat=${TRITLAB_BENCH_REPEAT:-5}
work=${TRITLAB_BENCH_DIR:-$root/target/bench}
prompt=64
gen=64

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
if [ "${TRITLAB_SKIP_BUILD:-0}" = 1 ]; then
  echo "TRITLAB_SKIP_BUILD=1: using the tritlab already in target/release" >&2
else
  echo "building tritlab (cargo build --release --locked --workspace --all-targets, as CI does)" >&2
  cargo build --release --locked --workspace --all-targets >&2
fi
tritlab=$root/target/release/tritlab
# shellcheck source=scripts/llamacpp.sh
source scripts/llamacpp.sh

mkdir -p "$work"
model=$work/b2b4t
if [ ! -f "$model/model.safetensors" ]; then
  "$tritlab" synth --shape bitnet-2b4t --seed 1 --out "$model" >&2
fi
gguf=$work/b2b4t-py-tq2_0.gguf
if [ ! -f "$gguf" ] || [ "$gguf" -ot "$model/model.safetensors" ]; then
  "$PY" scripts/bitnet-to-gguf.py "$model" "$gguf" --type tq2_0 >&2
fi

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for t in $threads; do
  echo "llama-bench, $t thread(s)" >&2
  "$LLAMACPP_BIN/llama-bench" -m "$gguf" -p $prompt -n $gen -t "$t" -r "$repeat" -o json \
    >"$out/llama-$t.json" 2>"$out/llama-$t.err" || {
    cat "$out/llama-$t.err" >&2
    exit 1
  }
  for h in $heads; do
    head=${h%%:*}
    packing=i2
    [[ $h == *:* ]] && packing=${h#*:}
    echo "tritlab bench, $t thread(s), $head head, $packing packing" >&2
    "$tritlab" --threads "$t" bench --model "$model" --head-precision "$head" --packing "$packing" \
      --prompt $prompt --tokens $gen --repeat "$repeat" --json >"$out/tritlab-$t-$h.json"
  done
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

cpu=$(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -1)
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
"$PY" - "$out" "$threads" "$heads" "$repeat" $prompt $gen "$gguf" <<'PY'
import json, os, statistics, sys
out, threads, heads, repeat = sys.argv[1], sys.argv[2].split(), sys.argv[3].split(), sys.argv[4]
prompt, gen = sys.argv[5], sys.argv[6]

def llama(t):
    tests = json.load(open(os.path.join(out, f"llama-{t}.json")))
    r = {}
    for test in tests:
        phase = "prefill" if test["n_gen"] == 0 else "decode"
        ts = sorted(test["samples_ts"])
        r[phase] = (statistics.median(ts), ts[0], ts[-1])
    return r

def tritlab(t, h):
    rows = json.load(open(os.path.join(out, f"tritlab-{t}-{h}.json")))[0]["value"]["rows"]
    by = {row[0]: row for row in rows}
    r = {p: tuple(float(x) for x in by[p][1:4]) for p in ("prefill", "decode")}
    r["threads"] = by["threads"][1]
    r["kernels"] = by["kernels"][1]
    r["peak"] = int(by["peak resident memory"][1]) if by["peak resident memory"][1].isdigit() else None
    r["weights"] = int(by["weights"][1])
    r["per_token"] = int(by["read per decoded token"][1])
    r["single"] = by["single-token products"][1] if "single-token products" in by else "unknown"

    return r

gguf_bytes = os.path.getsize(sys.argv[7])

fmt = lambda m: f"{m[0]:.2f} ({m[1]:.2f}–{m[2]:.2f})"
# "q4:t1" -> "q4 head, t1": the head precision, and the packing of the ternary layers.
label = lambda h: f"{h.split(':')[0]} head, {h.split(':')[1] if ':' in h else 'i2'}"
print("| threads | phase | tritlab head, packing | tritlab tok/s | llama.cpp tok/s | tritlab / llama.cpp |")
print("| --- | --- | --- | --- | --- | --- |")
notes = []
for t in threads:
    l = llama(t)
    for phase in ("prefill", "decode"):
        for h in heads:
            m = tritlab(t, h)
            if m["threads"] != t:
                sys.exit(f"tritlab ran with {m['threads']} threads, not {t}")
            ratio = m[phase][0] / l[phase][0]
            print(f"| {t} | {phase} | {label(h)} | {fmt(m[phase])} | {fmt(l[phase])} | {ratio:.2f}× |")
print()
# Decoding one token reads every weight once: the ternary matrices and the output projection.
# Bytes per token times tokens/s is the memory traffic each runtime sustains; when both are near
# the machine's read bandwidth, their speed ratio is the inverse of their bytes-per-token ratio.
print("| threads | decode | bytes read per token | tok/s (median) | GB/s sustained |")
print("| --- | --- | --- | --- | --- |")
for t in threads:
    l = llama(t)["decode"][0]
    print(f"| {t} | llama.cpp (the GGUF file) | {gguf_bytes / 1e6:.0f} MB | {l:.2f} | {gguf_bytes * l / 1e9:.1f} |")
    for h in heads:
        m = tritlab(t, h)
        d = m["decode"][0]
        print(f"| {t} | tritlab, {label(h)} | {m['per_token'] / 1e6:.0f} MB | {d:.2f} | {m['per_token'] * d / 1e9:.1f} |")
    for h in heads:
        m = tritlab(t, h)
        if m["peak"]:
            notes.append(f"tritlab, {t} thread(s), {label(h)}: weights {m['weights'] / 1e6:.1f} MB, "
                         f"peak resident memory {m['peak'] / 1e6:.1f} MB, kernels {m['kernels']}, "
                         f"single-token products: {m['single']}")
print()
print(f"Median tokens/s over {repeat} runs (min–max); prefill = a {prompt}-token prompt in one pass "
      f"(llama-bench pp{prompt}), decode = {gen} tokens one at a time (llama-bench tg{gen}).")
print()
for n in notes:
    print(f"- {n}")
PY
gguf_mb=$(( $(stat -c %s "$gguf") / 1000000 ))
cat <<EOF
- machine: $cpu, $(nproc) CPUs; date $(date -u +%Y-%m-%dT%H:%MZ)
- load average (1, 5, 15 min) before: $load_before; after: $load_after
- tritlab $commit; $LLAMACPP_VERSION, CPU backend, $(basename "$gguf") ${gguf_mb} MB (TQ2_0, F16 embedding, written by gguf-py)
- model: random weights of microsoft/bitnet-b1.58-2B-4T's shape (\`tritlab synth --shape bitnet-2b4t --seed 1\`)
EOF
