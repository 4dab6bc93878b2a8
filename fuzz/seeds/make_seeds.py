#!/usr/bin/env python3
"""Writes the seed corpora under fuzz/corpus/TARGET/ from the repository's fixtures.

Run from anywhere: python3 fuzz/seeds/make_seeds.py. Needs numpy and the `safetensors` and
`blake3` Python packages (pip install safetensors blake3). Seeds are small on purpose: the
committed corpora stay well under 2 MB, and libFuzzer's default -max_len follows the largest seed.
"""

import json
import re
import struct
import sys
import zlib
from pathlib import Path

import blake3
import numpy as np
from safetensors.numpy import save as st_save

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "fuzz" / "corpus"
RNG = np.random.default_rng(1069)


def put(target, name, data):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data if isinstance(data, bytes) else data.encode())


# --- morphism_log: the default model's log, cut after a few records -------------------------------
def frames(log):
    at, out = 16, []
    while at + 12 <= len(log):
        (n,) = struct.unpack_from("<I", log, at)
        out.append((at, 12 + n))
        at += 12 + n
    return out


log = (ROOT / "assets/default-model/morphisms.tml").read_bytes()
fs = frames(log)
put("morphism_log", "header-only", log[:16])
for count in (1, 2):
    end = fs[count - 1][0] + fs[count - 1][1]
    put("morphism_log", f"records-{count}", log[:end])
end = fs[0][0] + fs[0][1]
put("morphism_log", "torn-tail", log[: end + 30])
# The smallest record from the log on its own (the decoder also reads raw payloads).
smallest = min(fs, key=lambda f: f[1])
put("morphism_log", "payload", log[smallest[0] + 12 : smallest[0] + smallest[1]])

# --- trit_flips ----------------------------------------------------------------------------------
for i, n in enumerate((0, 7, 64, 300)):
    put("trit_flips", f"random-{i}", bytes(RNG.integers(0, 256, n + 1, dtype=np.uint8)))

# --- engine_config -------------------------------------------------------------------------------
configs = {
    "default": ROOT / "assets/default-model/config.json",
    "offline": ROOT / "tests/fixtures/bitnet/tiny-offline/config.json",
    "offline-bitlinear": ROOT / "tests/fixtures/bitnet/tiny-offline-bitlinear/config.json",
    "online": ROOT / "tests/fixtures/bitnet/tiny-online/config.json",
}
for name, path in configs.items():
    put("engine_config", name, path.read_bytes())


# --- engine_forward: toy models, config + NUL + safetensors --------------------------------------
def toy(mode, linear_class="autobitlinear", tied=True, act="relu2"):
    h, inter, vocab, heads, kv = 8, 16, 16, 2, 1
    hd = h // heads
    config = {
        "model_type": "bitnet",
        "vocab_size": vocab,
        "hidden_size": h,
        "intermediate_size": inter,
        "num_hidden_layers": 1,
        "num_attention_heads": heads,
        "num_key_value_heads": kv,
        "hidden_act": act,
        "max_position_embeddings": 64,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "tie_word_embeddings": tied,
        "bos_token_id": 0,
        "eos_token_id": 1,
        "quantization_config": {
            "quant_method": "bitnet",
            "linear_class": linear_class,
            "quantization_mode": mode,
        },
    }
    t = {"model.embed_tokens.weight": RNG.normal(0, 1, (vocab, h)).astype(np.float32)}
    if not tied:
        t["lm_head.weight"] = RNG.normal(0, 1, (vocab, h)).astype(np.float32)
    t["model.norm.weight"] = np.ones(h, np.float32)
    p = "model.layers.0"
    for norm, n in (("input_layernorm", h), ("post_attention_layernorm", h),
                    ("self_attn.attn_sub_norm", heads * hd), ("mlp.ffn_sub_norm", inter)):
        t[f"{p}.{norm}.weight"] = np.ones(n, np.float32)
    for name, out_f, in_f in (("self_attn.q_proj", heads * hd, h), ("self_attn.k_proj", kv * hd, h),
                              ("self_attn.v_proj", kv * hd, h), ("self_attn.o_proj", h, heads * hd),
                              ("mlp.gate_proj", inter, h), ("mlp.up_proj", inter, h),
                              ("mlp.down_proj", h, inter)):
        if mode == "offline":
            codes = RNG.integers(0, 3, (out_f // 4 * 4, in_f), dtype=np.uint8)
            packed = np.zeros((out_f // 4, in_f), np.uint8)
            for k in range(4):
                packed |= codes[k * (out_f // 4):(k + 1) * (out_f // 4)] << (2 * k)
            t[f"{p}.{name}.weight"] = packed
            t[f"{p}.{name}.weight_scale"] = np.array([0.5], np.float32)
        else:
            t[f"{p}.{name}.weight"] = RNG.normal(0, 1, (out_f, in_f)).astype(np.float32)
    return json.dumps(config).encode() + b"\0" + st_save(t)


put("engine_forward", "offline", toy("offline"))
put("engine_forward", "offline-bitlinear", toy("offline", "bitlinear", act="silu"))
put("engine_forward", "online-untied", toy("online", tied=False))

# --- tokenizer -----------------------------------------------------------------------------------
fixture_tok = (ROOT / "tests/fixtures/bitnet/tiny-offline/tokenizer.json").read_bytes()
put("tokenizer", "fixture", fixture_tok + b"\0To be, or not to be: that is the question.")
put("tokenizer", "fixture-unicode", fixture_tok + "\0Grüße, 世界 \u00e9\u0301 \U0001F600\n\t".encode())
put("tokenizer", "wordlevel", json.dumps({
    "version": "1.0", "truncation": None, "padding": None, "added_tokens": [],
    "normalizer": None, "pre_tokenizer": {"type": "Whitespace"}, "post_processor": None,
    "decoder": None,
    "model": {"type": "WordLevel", "vocab": {"[UNK]": 0, "to": 1, "be": 2}, "unk_token": "[UNK]"},
}).encode() + b"\0to be or not")

# --- workbooks -----------------------------------------------------------------------------------
w, hgt = 2, 2
rgba = bytes([0, 0, 0, 255, 255, 0, 0, 255, 0, 255, 0, 255, 0, 0, 255, 128])
hasher = blake3.blake3(b"tritlab-image-v1\0" + struct.pack("<II", w, hgt) + rgba)
image_hash = hasher.digest()[:16].hex()
synthetic = f"""<!-- tritlab-workbook v1 -->

# Outputs of every kind

```tritlab id=gen
generate "To be" --max-tokens 4 --seed 7
```

```output text
hello
```

```output error
no model loaded
```

![a trit map](book.assets/{image_hash}.png "output image")

```output trace
{{"title":"gay-tracer"}}
{{"text":"To","rgb":"#d62728","trit":-1}}
{{"text":" be","rgb":"#c8c8c8","trit":0,"note":"prompt"}}
{{"text":"<&>","rgb":"#1f77b4","trit":1}}
```

```output table
{{"title":"Trit counts","columns":["layer","-1","0","+1"]}}
["layers.0.self_attn.q_proj","1201","<b>","1217"]
```

```output plot
{{"title":"Training loss","x_label":"step","y_label":"loss"}}
{{"name":"train","points":[[0.0,2.9],[1.0,2.4],[2.0,2.2]]}}
{{"name":"eval","points":[[0.0,3.1],[1.0,null],[2.0,2.5]]}}
```

Prose with [a link](javascript:alert(1)), <script>x</script> and ![img](data:text/html,x).

````rust id=r
fn main() {{ println!("```"); }}
````
"""
for target in ("workbook_roundtrip", "workbook_export"):
    put(target, "all-outputs.md", synthetic)
    for book in ("tour.md", "training.md", "plugins.md"):
        put(target, book, (ROOT / "workbooks" / book).read_bytes())


# --- png_asset -----------------------------------------------------------------------------------
def png(width, height, colour, depth, rows, palette=None):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0))
    if palette:
        out += chunk(b"PLTE", palette)
    out += chunk(b"IDAT", zlib.compress(b"".join(b"\0" + r for r in rows)))
    return out + chunk(b"IEND", b"")


put("png_asset", "rgba-2x2.png", png(2, 2, 6, 8, [rgba[:8], rgba[8:]]))
put("png_asset", "grey-3x1.png", png(3, 1, 0, 8, [bytes([0, 128, 255])]))
put("png_asset", "grey16-1x2.png", png(1, 2, 0, 16, [b"\x12\x34", b"\xff\xff"]))
put("png_asset", "rgb-1x1.png", png(1, 1, 2, 8, [b"\x01\x02\x03"]))
put("png_asset", "grey-alpha-1x1.png", png(1, 1, 4, 8, [b"\x40\x80"]))
put("png_asset", "palette-2x1.png", png(2, 1, 3, 8, [b"\x00\x01"], palette=b"\xff\x00\x00\x00\x00\xff"))
put("png_asset", "grey1-9x1.png", png(9, 1, 0, 1, [b"\xaa\x80"]))

# --- command_lang: every command line from the shipped workbooks and the reference -------------
lines = set()
for book in ROOT.glob("workbooks/*.md"):
    for block in re.findall(r"```tritlab[^\n]*\n(.*?)```", book.read_text(), re.S):
        lines.update(l for l in block.splitlines() if l.strip())
for line in re.findall(r"^    (\S.*)$", (ROOT / "docs/COMMANDS.md").read_text(), re.M):
    lines.add(line)
for i, line in enumerate(sorted(lines)):
    put("command_lang", f"line-{i:03}", line)
put("command_lang", "script", "load default\n# comment\ngenerate \"a \\\"b\\\"\" \\\n  --seed 7\n:rust\nlet x = 1;\n:end\n")
put("command_lang", "unicode", "generte \"Grüße 世界\" --max-tokens=é")

# --- train_checkpoint: the save-damage-load case (odd first byte) ---------------------------------
for i, (case, seed, offset, damage) in enumerate(((1, 7, 5, 0x20), (3, 9, 900, 0x00), (1, 1, 4000, 0x7f))):
    put("train_checkpoint", f"damage-{i}", bytes([case]) + struct.pack("<QI", seed, offset) + bytes([damage]))

# --- train_run_json ------------------------------------------------------------------------------
model = json.loads(configs["online"].read_text())
run = {
    "format": "tritlab-run", "version": 1, "tritlab_version": "0.1.0",
    "model": model,
    "options": {
        "preset": "tiny", "steps": 200, "seq_len": 64, "batch_size": 8, "learning_rate": 0.003,
        "warmup_steps": 10, "min_lr_ratio": 0.1, "weight_decay": 0.1, "beta1": 0.9, "beta2": 0.95,
        "adam_eps": 1e-8, "grad_clip": 1.0, "seed": 1069, "weight_quant": "tensor",
        "projection": False, "twin": False, "checkpoint_every": 50, "keep_checkpoints": 0,
        "eval_every": 0, "eval_sequences": 64,
    },
    "data": {
        "train_files": ["data/sonnets.txt"], "val_files": [], "val_fraction": 0.1,
        "train_tokens_hash": "00" * 32, "val_tokens_hash": "11" * 32,
        "train_tokens": 1000, "val_tokens": 100,
    },
    "threads": 2,
}
put("train_run_json", "run.json", json.dumps(run, indent=2))

# --- plugin_convert --------------------------------------------------------------------------------
for i, n in enumerate((16, 64, 256, 1024)):
    put("plugin_convert", f"random-{i}", bytes(RNG.integers(0, 256, n, dtype=np.uint8)))

print(f"image hash {image_hash}", file=sys.stderr)
