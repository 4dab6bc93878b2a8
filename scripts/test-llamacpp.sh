#!/usr/bin/env bash
# Cross-runtime test against real llama.cpp (through llama-cpp-python, built from its sdist,
# which vendors llama.cpp): tritlab's TQ2_0 / TQ1_0 exports must load and give next-token
# logits close to tritlab's on the same ids. Not part of `cargo test`: it needs Python packages
# and a llama.cpp build (several minutes on two cores).
#
#   pip install gguf numpy && pip install llama-cpp-python   # or from the sdist, see docs/GGUF.md
#   scripts/test-llamacpp.sh
#
# Tolerance: both runtimes quantise activations to int8, but tritlab per token (BitNet's
# absmax) and llama.cpp per 256-block (Q8_K) — rounding differs, so logits differ by a few
# hundredths; the test requires the same argmax, correlation > 0.999 and max |Δ| < 5% of the
# logits' range (max − min).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! python3 -c "import llama_cpp, numpy" 2>/dev/null; then
  echo "skip: llama_cpp (llama-cpp-python) or numpy is not installed"; exit 0
fi
start=$(date +%s)
cargo build --release -p tritlab >/dev/null
bin=target/release/tritlab
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ids="3,17,1,42,5,9,33,2"
model=tests/fixtures/gguf/tiny256
for ty in tq2_0 tq1_0; do
  "$bin" convert "$model" "$tmp/m-$ty.gguf" --to "gguf-$ty" --embed-type f32 >/dev/null
  "$bin" logits "$tmp/m-$ty.gguf" --ids "$ids" --json > "$tmp/t-$ty.json"
  python3 - "$tmp/m-$ty.gguf" "$tmp/t-$ty.json" "$ids" <<'PY'
import json, sys
import numpy as np
import llama_cpp
path, tjson, ids = sys.argv[1], sys.argv[2], [int(x) for x in sys.argv[3].split(",")]
t = json.load(open(tjson))
tl = np.array(t["logits"], dtype=np.float32).reshape(len(ids), -1)[-1]
llm = llama_cpp.Llama(model_path=path, n_ctx=64, logits_all=True, verbose=False, vocab_only=False)
llm.eval(ids)
ll = np.array(llm.scores[len(ids) - 1], dtype=np.float32)
d = np.abs(tl - ll).max(); spread = tl.std(); corr = np.corrcoef(tl, ll)[0, 1]
print(f"{path}: max|Δ| {d:.4f} (logit std {spread:.3f}), corr {corr:.6f}, argmax {tl.argmax()} / {ll.argmax()}")
assert tl.argmax() == ll.argmax() and corr > 0.999 and d < 0.05 * (tl.max() - tl.min()), "llama.cpp disagrees"
PY
done
echo "test-llamacpp: ok in $(( $(date +%s) - start )) s"
