#!/usr/bin/env python3
"""A BitNet b1.58 checkpoint in transformers' offline layout -> a GGUF for upstream llama.cpp.

    python3 scripts/bitnet-to-gguf.py MODEL_DIR OUT.gguf [--type tq2_0|tq1_0]

Written independently of tritlab's own GGUF writer, so that a comparison with llama.cpp does not
rest on tritlab's export: the ternary matrices are unpacked here (transformers' packing: a
[ceil(out/4), in] uint8 tensor whose bit pair i holds the rows of slab i, code = trit + 1; times
the bf16 `weight_scale`) and quantised by the `gguf` package's own numpy quantiser (PyPI
`gguf`, the same code llama.cpp's convert_hf_to_gguf.py calls). TQ blocks take the largest
|value| of their 256 weights as scale, which for trit x scale is the tensor's scale itself, so
the trits are kept exactly. Embedding (tied output) in F16, norms in F32, as llama.cpp's
converter writes a TQ model.

The architecture is llama.cpp's `bitnet` (SiLU gate). A squared-ReLU checkpoint such as
microsoft/bitnet-b1.58-2B-4T (and tritlab's synthetic copy of its shapes) is written as such
anyway, with a warning: upstream has no squared-ReLU BitNet graph, and the activation costs the
same, so speeds stay comparable while the outputs do not. There is no tokenizer in the file
(`tokenizer.ggml.model` = "none", a vocabulary of dummy tokens): llama-bench needs none.

Needs numpy and gguf (pip install gguf numpy). Reads the safetensors header itself, so bf16
needs no torch.
"""
import argparse
import json
import os
import sys

import numpy as np

try:
    import gguf
except ImportError:
    sys.exit("bitnet-to-gguf: the gguf package is missing (pip install gguf numpy)")

PROJ = {
    "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}
NORMS = {
    "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
    "self_attn.attn_sub_norm": "attn_sub_norm", "mlp.ffn_sub_norm": "ffn_sub_norm",
}
DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16, "U8": np.uint8, "I8": np.int8}


class Safetensors:
    """The tensors of one or more .safetensors files, memory-mapped, bf16 widened on reading."""

    def __init__(self, model_dir):
        index = os.path.join(model_dir, "model.safetensors.index.json")
        if os.path.exists(index):
            with open(index) as f:
                files = sorted(set(json.load(f)["weight_map"].values()))
        else:
            files = ["model.safetensors"]
        self.tensors = {}
        for name in files:
            path = os.path.join(model_dir, name)
            with open(path, "rb") as f:
                n = int.from_bytes(f.read(8), "little")
                header = json.loads(f.read(n))
            data = np.memmap(path, np.uint8, "r", offset=8 + n)
            for key, meta in header.items():
                if key == "__metadata__":
                    continue
                if meta["dtype"] not in DTYPES:
                    sys.exit(f"bitnet-to-gguf: {path}: tensor {key} has dtype {meta['dtype']}, "
                             f"which this script does not read")
                a, b = meta["data_offsets"]
                self.tensors[key] = (data, a, b, meta["dtype"], meta["shape"])

    def has(self, name):
        return name in self.tensors

    def raw(self, name):
        data, a, b, dtype, shape = self.tensors[name]
        return data[a:b].view(DTYPES[dtype]).reshape(shape), dtype

    def f32(self, name):
        x, dtype = self.raw(name)
        if dtype == "BF16":
            return (x.astype(np.uint32) << 16).view(np.float32)
        return x.astype(np.float32)


def unpack(packed, out_features):
    """transformers' offline packing back to trits in {-1, 0, +1}, as int8 [out, in]."""
    slabs = [((packed >> (2 * i)) & 3).astype(np.int8) - 1 for i in range(4)]
    return np.concatenate(slabs, axis=0)[:out_features]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model_dir")
    ap.add_argument("out")
    ap.add_argument("--type", choices=["tq2_0", "tq1_0"], default="tq2_0")
    args = ap.parse_args()
    qtype = {"tq2_0": gguf.GGMLQuantizationType.TQ2_0,
             "tq1_0": gguf.GGMLQuantizationType.TQ1_0}[args.type]

    with open(os.path.join(args.model_dir, "config.json")) as f:
        c = json.load(f)
    h, inter, layers = c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"]
    heads = c["num_attention_heads"]
    kv_heads = c.get("num_key_value_heads") or heads
    head_dim = c.get("head_dim") or h // heads
    vocab = c["vocab_size"]
    if h % 256 or inter % 256:
        sys.exit(f"bitnet-to-gguf: rows of {h} and {inter} weights are not whole 256-blocks, "
                 "which TQ2_0 / TQ1_0 need")
    if c.get("hidden_act", "silu") != "silu":
        print(f"bitnet-to-gguf: warning: hidden_act {c.get('hidden_act')!r} is written as "
              "llama.cpp's SiLU `bitnet` graph (same cost, other outputs)", file=sys.stderr)
    st = Safetensors(args.model_dir)
    w = gguf.GGUFWriter(args.out, "bitnet")
    w.add_context_length(c.get("max_position_embeddings", 2048))
    w.add_embedding_length(h)
    w.add_block_count(layers)
    w.add_feed_forward_length(inter)
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_rope_dimension_count(head_dim)
    w.add_rope_freq_base(float(c.get("rope_theta", 10000.0)))
    w.add_layer_norm_rms_eps(float(c.get("rms_norm_eps", 1e-5)))
    w.add_file_type(gguf.LlamaFileType.MOSTLY_TQ2_0 if args.type == "tq2_0"
                    else gguf.LlamaFileType.MOSTLY_TQ1_0)
    w.add_vocab_size(vocab)
    w.add_tokenizer_model("none")

    embed = st.f32("model.embed_tokens.weight")
    w.add_tensor("token_embd.weight", embed.astype(np.float16))
    if not c.get("tie_word_embeddings", True) and st.has("lm_head.weight"):
        w.add_tensor("output.weight", st.f32("lm_head.weight").astype(np.float16))
    w.add_tensor("output_norm.weight", st.f32("model.norm.weight"))
    for layer in range(layers):
        p = f"model.layers.{layer}"
        for hf, g in NORMS.items():
            w.add_tensor(f"blk.{layer}.{g}.weight", st.f32(f"{p}.{hf}.weight"))
        for hf, g in PROJ.items():
            name = f"{p}.{hf}.weight"
            out_features = {"self_attn.q_proj": heads * head_dim, "self_attn.k_proj": kv_heads * head_dim,
                            "self_attn.v_proj": kv_heads * head_dim, "self_attn.o_proj": h,
                            "mlp.gate_proj": inter, "mlp.up_proj": inter, "mlp.down_proj": h}[hf]
            raw, dtype = st.raw(name)
            if dtype == "U8":
                scale = st.f32(f"{p}.{hf}.weight_scale").reshape(-1)
                if scale.size != 1:
                    sys.exit(f"bitnet-to-gguf: {name}_scale has {scale.size} values; only one "
                             "scale per tensor is supported")
                values = unpack(raw, out_features).astype(np.float32) * scale[0]
            else:
                values = st.f32(name)
            w.add_tensor(f"blk.{layer}.{g}.weight", gguf.quants.quantize(values, qtype), raw_dtype=qtype)
        print(f"bitnet-to-gguf: layer {layer + 1}/{layers}", file=sys.stderr, end="\r")
    print(file=sys.stderr)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"bitnet-to-gguf: wrote {args.out} ({os.path.getsize(args.out) / 1e6:.1f} MB, "
          f"{args.type}, F16 embedding)", file=sys.stderr)


if __name__ == "__main__":
    main()
