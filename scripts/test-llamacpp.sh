#!/usr/bin/env bash
# Cross-runtime tests against upstream llama.cpp, built once by scripts/llamacpp.sh (the
# llama.cpp vendored in the llama-cpp-python sdist from PyPI; no Python bindings are built).
# Not part of `cargo test`: the first run compiles llama.cpp (ten minutes or more on two cores).
#
#   scripts/test-llamacpp.sh
#
# 1. tritlab's TQ2_0 / TQ1_0 exports of tests/fixtures/gguf/tiny256 load in llama.cpp, and its
#    next-token logits (scripts/llamacpp-logits.c) are close to tritlab's on the same ids.
#    Tolerance: both runtimes quantise activations to int8, but tritlab per token (BitNet's
#    absmax) and llama.cpp per 256-block (Q8_K), so rounding differs and logits differ by a few
#    hundredths; the test requires the same argmax, correlation > 0.999 and max |Δ| < 5% of the
#    logits' range (max − min).
# 2. llama.cpp's own converter (vendored convert_hf_to_gguf.py, --outtype tq2_0 and tq1_0) on the
#    tiny256 checkpoint; tritlab loads what it writes, and the logits are compared with the HF
#    checkpoint's. It needs torch, transformers and sentencepiece, which this script installs
#    from PyPI into target/py-convert (TRITLAB_CONVERT_PY names another python; set it to
#    "skip" to leave this part out). What the converter does with the checkpoint is reported,
#    not failed on: it is upstream's behaviour, not tritlab's (see the messages).
# 3. the default model, exported by `tritlab convert OUT.gguf --model default --to gguf-tq2_0`,
#    generates text in llama.cpp's llama-completion (greedy), next to tritlab's greedy text.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
start=$(date +%s)
echo "building tritlab (cargo build --release --locked --workspace --all-targets, as CI does)"
cargo build --release --locked --workspace --all-targets >/dev/null
bin=$root/target/release/tritlab
# shellcheck source=scripts/llamacpp.sh
source scripts/llamacpp.sh
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ids="3,17,1,42,5,9,33,2"
model=tests/fixtures/gguf/tiny256

# compare NAME A.json B.json tolerance|exact — A from `tritlab logits --out A.json`, B from tritlab
# or from llamacpp-logits; the last position's logits are compared.
compare() {
  "$PY" - "$@" <<'PY'
import json, sys
import numpy as np
name, a_path, b_path, mode = sys.argv[1:5]
def last(path):
    j = json.load(open(path))
    x = np.array(j["logits"], dtype=np.float32)
    return x.reshape(-1, x.shape[-1])[-1] if x.ndim > 1 else x
a, b = last(a_path), last(b_path)
if a.shape != b.shape:
    sys.exit(f"{name}: {a.size} logits against {b.size}")
d = float(np.abs(a - b).max()); corr = float(np.corrcoef(a, b)[0, 1]); spread = float(a.max() - a.min())
print(f"{name}: max|Δ| {d:.4f} of a range {spread:.3f}, corr {corr:.6f}, argmax {a.argmax()} / {b.argmax()}")
if mode == "exact":
    ok = d == 0.0
else:
    ok = a.argmax() == b.argmax() and corr > 0.999 and d < 0.05 * spread
print(f"{name}: {'ok' if ok else 'DIFFERENT'}")
sys.exit(0 if ok else 3)
PY
}

# logits MODEL OUT.json — every position's logits, with the checkpoint's own output projection
logits() {
  "$bin" logits --model "$1" --head-precision exact --ids "$ids" --out "$2" >/dev/null
}

echo "== 1. tritlab's exports of tiny256 in llama.cpp"
for ty in tq2_0 tq1_0; do
  "$bin" convert "$tmp/m-$ty.gguf" --model "$model" --to "gguf-$ty" --embed-type f32 >/dev/null
  logits "$tmp/m-$ty.gguf" "$tmp/t-$ty.json"
  "$LLAMACPP_BIN/llamacpp-logits" "$tmp/m-$ty.gguf" "$ids" >"$tmp/l-$ty.json"
  compare "tritlab $ty export: tritlab vs llama.cpp" "$tmp/t-$ty.json" "$tmp/l-$ty.json" tolerance
done

echo "== 2. llama.cpp's converter on the tiny256 checkpoint"
conv_py=${TRITLAB_CONVERT_PY:-$root/target/py-convert/bin/python}
if [ "$conv_py" = skip ]; then
  echo "skipped (TRITLAB_CONVERT_PY=skip)"
else
  if ! "$conv_py" -c "import torch, transformers, sentencepiece" 2>/dev/null; then
    if [ -n "${TRITLAB_CONVERT_PY:-}" ]; then
      echo "$conv_py lacks torch, transformers or sentencepiece" >&2
      exit 1
    fi
    echo "installing the converter's requirements from PyPI into target/py-convert (torch is large)"
    python3 -m venv target/py-convert
    # The versions of vendor/llama.cpp/requirements/requirements-convert_hf_to_gguf.txt.
    target/py-convert/bin/pip install --quiet --only-binary :all: "torch==2.11.0" "numpy~=2.2.6" \
      "sentencepiece>=0.1.98,<0.3.0" "transformers==4.57.6" "protobuf>=4.21.0,<5.0.0" \
      tqdm pyyaml requests
  fi
  logits "$model" "$tmp/hf.json"
  hf=$tmp/tiny256
  cp -r "$model" "$hf"
  convert() { # TYPE EXTRA-OPTION… — runs the converter on $hf, prints why it refused if it did
    local ty=$1
    shift
    if "$conv_py" "$LLAMACPP_SRC/convert_hf_to_gguf.py" "$hf" --outtype "$ty" \
      --outfile "$tmp/c-$ty.gguf" "$@" >"$tmp/conv-$ty.log" 2>&1; then
      return 0
    fi
    grep -v '^INFO' "$tmp/conv-$ty.log" | grep -v '^ ' | tail -2 | sed 's/^/    /'
    return 1
  }
  # The converter is tried as it is, then with each obstacle it reports taken away, to say
  # exactly where it stops and to reach the weights.
  for ty in tq2_0 tq1_0; do
    echo "convert_hf_to_gguf.py $ty on the checkpoint as it is:"
    convert "$ty" && echo "    converted"
    echo "convert_hf_to_gguf.py $ty --no-lazy:"
    convert "$ty" --no-lazy && echo "    converted"
  done
  # transformers' names of BitNet's sub-norms (also microsoft/bitnet-b1.58-2B-4T's) are unknown
  # to this converter, which knows 1bitLLM's; and BitnetModel.set_vocab reads a SentencePiece
  # tokenizer.model, which neither tiny256 (ids only) nor the 2B-4T model (tokenizer.json) has.
  "$conv_py" - "$hf" <<'PY'
import io, json, os, sys
import sentencepiece as spm
d = sys.argv[1]
p = os.path.join(d, "model.safetensors")
raw = open(p, "rb").read()
n = int.from_bytes(raw[:8], "little")
header = json.loads(raw[8:8 + n])
header = {k.replace("self_attn.attn_sub_norm", "self_attn.inner_attn_ln")
           .replace("mlp.ffn_sub_norm", "mlp.ffn_layernorm"): v for k, v in header.items()}
hb = json.dumps(header, separators=(",", ":")).encode()
hb += b" " * ((8 - len(hb) % 8) % 8)
open(p, "wb").write(len(hb).to_bytes(8, "little") + hb + raw[8 + n:])
text = ["to be or not to be that is the question whether tis nobler in the mind to suffer"] * 20
buf = io.BytesIO()
spm.SentencePieceTrainer.train(sentence_iterator=iter(text), model_writer=buf, vocab_size=40,
                               model_type="bpe", hard_vocab_limit=False, minloglevel=2)
open(os.path.join(d, "tokenizer.model"), "wb").write(buf.getvalue())
PY
  "$PY" scripts/bitnet-to-gguf.py "$model" "$tmp/ref.gguf" 2>/dev/null
  for ty in tq2_0 tq1_0; do
    echo "convert_hf_to_gguf.py $ty --no-lazy, sub-norms renamed to 1bitLLM's, with a tokenizer.model:"
    convert "$ty" --no-lazy || continue
    types=$(grep -o -- '--> [A-Z0-9_]*' "$tmp/conv-$ty.log" | sort | uniq -c | tr -s ' ' | paste -sd, -)
    echo "    converted (tensor types:$types)"
    if ! logits "$tmp/c-$ty.gguf" "$tmp/c-$ty.json" 2>"$tmp/c-$ty.err"; then
      echo "tritlab does not load llama.cpp's $ty conversion:"
      sed 's/^/    /' "$tmp/c-$ty.err"
      exit 1
    fi
    echo "    tritlab loads it"
    compare "llama.cpp's $ty conversion in tritlab vs the HF checkpoint" "$tmp/hf.json" "$tmp/c-$ty.json" exact ||
      true
    # Where the difference comes from: the converter's ternary tensors against the exact
    # trit × weight_scale of the checkpoint (scripts/bitnet-to-gguf.py, byte-identical to the
    # fixture's gguf-py files).
    "$PY" - "$tmp/ref.gguf" "$tmp/c-$ty.gguf" <<'PY'
import sys
import numpy as np
import gguf
ref = {t.name: t for t in gguf.GGUFReader(sys.argv[1]).tensors}
conv = {t.name: t for t in gguf.GGUFReader(sys.argv[2]).tensors}
same_trits, ratios, nonzero, inverse = True, [], [], []
for name, r in ref.items():
    if r.tensor_type not in (gguf.GGMLQuantizationType.TQ2_0, gguf.GGMLQuantizationType.TQ1_0):
        continue
    a = gguf.quants.dequantize(r.data, r.tensor_type)
    c = conv[name]
    b = gguf.quants.dequantize(c.data, c.tensor_type)
    same_trits &= bool(np.array_equal(np.sign(a), np.sign(b)))
    nz = a != 0
    s = float(np.abs(a[nz]).max())
    ratios.append(float(np.median(b[nz] / a[nz])))
    nonzero.append(float(nz.mean()))
    inverse.append(1 / (s * s))
print(f"    trits equal to the checkpoint's: {'yes' if same_trits else 'NO'}; scale / checkpoint scale "
      f"per tensor: {', '.join(f'{r:.3g}' for r in ratios)}")
print(f"    1 / scale² per tensor:            {', '.join(f'{r:.3g}' for r in inverse)}")
print(f"    share of non-zero trits:          {', '.join(f'{r:.3g}' for r in nonzero)}")
print("    (upstream's BitnetModel divides by weight_scale whatever the checkpoint's linear_class —")
print("    tiny256 is autobitlinear, whose weight_scale multiplies — and then re-quantises the")
print("    ternary weights by their absmean, which multiplies each scale by the share of non-zero trits)")
PY
  done
fi

echo "== 3. the default model in llama.cpp's llama-completion"
"$bin" convert "$tmp/default.gguf" --model default --to gguf-tq2_0 >/dev/null
prompt="ROMEO:"
"$LLAMACPP_BIN/llama-completion" -m "$tmp/default.gguf" -p "$prompt" -n 12 --temp 0 -t 1 \
  -no-cnv --no-warmup --no-display-prompt -c 128 >"$tmp/lc.out" 2>"$tmp/lc.err" || {
  tail -20 "$tmp/lc.err" >&2
  exit 1
}
llama_text=$(cat "$tmp/lc.out")
tritlab_text=$("$bin" generate "$prompt" --greedy --max-tokens 12 --json |
  "$PY" -c "import json,sys; o=json.load(sys.stdin); print(''.join(t['text'] for x in o if x['kind']=='trace' for t in x['value']['tokens']))")
echo "llama.cpp: $(printf '%q' "$llama_text")"
echo "tritlab:   $(printf '%q' "$tritlab_text")"
if [ -z "$llama_text" ]; then
  echo "llama-completion printed no tokens" >&2
  exit 1
fi
grep -E "eval time|load time" "$tmp/lc.err" | sed 's/^/    /' || true
echo "test-llamacpp: ok in $(($(date +%s) - start)) s"
