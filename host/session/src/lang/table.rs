//! The command table: every command, argument, option, default and example of the language.
//!
//! Add or change a command here and the parser, `help`, completion, hints, highlighting and
//! `docs/COMMANDS.md` follow (the tests check that every example parses, that synopses name
//! exactly the table's arguments and options, and that the reference document is current).

use super::ast::{
    CheckTarget, EmbedType, ExportFormat, HeadPrecision, Packing, PlotSeries, Preset,
    ProductKernels, ScaleGranularity, SynthShape,
};
use super::spec::{
    ArgSpec, CommandId, CommandSpec, Example, OptionSpec, PluginRole, Presence, Topic, ValueKind,
};

/// Every top-level command, in the order `help` lists them within a topic.
pub static COMMANDS: &[CommandSpec] = &[
    // ---- model -------------------------------------------------------------------------------
    CommandSpec {
        id: CommandId::Load,
        name: "load",
        topic: Topic::Model,
        synopsis: &["load default|PATH [--head-precision P] [--packing i2|t1]"],
        summary: "load the default model or a checkpoint",
        description: "Loads a BitNet b1.58 model, replacing the one loaded before. `default` is the model \
            shipped in `assets/default-model`. PATH is a Hugging Face model directory: `config.json`, \
            the weights as `*.safetensors` (sharded or not) and `tokenizer.json`; offline-packed and \
            online (latent-weight) checkpoints both load. It can also be a GGUF file (llama.cpp's \
            TQ1_0 and TQ2_0, bitnet.cpp's I2_S), or a training run's folder, for the model the \
            run wrote. A quoted \"default\" is a path, not the \
            default model. `--head-precision` says how the output projection (the tied embedding) \
            is kept: `exact` multiplies the checkpoint's own matrix; `bf16`, `int8`, `q6` and `q4` \
            convert it once into a smaller format, which reads fewer bytes per generated token \
            (`eval ppl --compare` measures what that costs). `--packing` says how the ternary \
            layers are kept in memory: `i2` (2 bits per trit) or `t1` (1.6 bits per trit, 20% \
            fewer bytes per generated token, more decoding work; decoded in registers on x86-64 \
            with AVX2 or AVX-512, through a slower table elsewhere). Both give the same outputs bit for bit; `t1` needs one scale per tensor.",
        args: &[arg(
            "default|PATH",
            ValueKind::Model,
            "the default model, a model directory, a GGUF file or a run's folder",
        )],
        options: &[
            option(
                "head-precision",
                ValueKind::Choice(HeadPrecision::NAMES),
                "",
                "how the output projection is kept",
            )
            .with_default(HeadPrecision::DEFAULT.name()),
            option(
                "packing",
                ValueKind::Choice(Packing::NAMES),
                "",
                "how the ternary layers are kept in memory",
            )
            .with_default(Packing::DEFAULT.name()),
        ],
        examples: &[
            example("load default", "the bundled model"),
            example("load default --head-precision int8", "an 8-bit output projection"),
            example("load default --packing t1", "ternary layers at 1.6 bits per trit"),
            example("load ~/models/bitnet-b1.58-2B-4T", "a Hugging Face download"),
        ],
        ..command()
    },
    CommandSpec {
        id: CommandId::Info,
        name: "info",
        topic: Topic::Model,
        synopsis: &["info"],
        summary: "summary of the loaded model",
        description: "Shows the loaded model's configuration (layers, hidden size, heads, vocabulary, \
            context length), how its weights are stored, and its parameter and trit counts.",
        examples: &[example("info", "")],
        ..command()
    },
    CommandSpec {
        id: CommandId::Layers,
        name: "layers",
        topic: Topic::Model,
        synopsis: &["layers"],
        summary: "the loaded model's layers: trit counts and GF(3) sums",
        description: "One row per ternary weight matrix: its shape, how many of its weights are -1, 0 \
            and +1, and the sum of its trits in GF(3), that is, reduced mod 3.",
        examples: &[example("layers", "")],
        ..command()
    },
    CommandSpec {
        id: CommandId::Verify,
        name: "verify",
        topic: Topic::Model,
        synopsis: &["verify [PATH]"],
        summary: "check that a checkpoint is really ternary",
        description: "Checks every linear-layer weight of the checkpoint at PATH (a model directory, \
            one `.safetensors` file or a GGUF file), or of the loaded model when PATH is left out: \
            a BitNet b1.58 weight must equal -s, 0 or +s for its scale s (one per tensor, row or \
            128-column group). Reports the tensors that break the rule. For GGUF it also says \
            each tensor's type and scales: TQ1_0 and TQ2_0 block scales (their count and range), \
            I2_S's one scale, and float weights checked like a checkpoint's.",
        args: &[optional_arg("PATH", ValueKind::Path, "checkpoint to check; the loaded model if left out")],
        examples: &[
            example("verify", "the loaded model"),
            example("verify ~/models/bitnet-b1.58-2B-4T-bf16", "a checkpoint on disk"),
        ],
        ..command()
    },
    CommandSpec {
        id: CommandId::Show,
        name: "show",
        topic: Topic::Model,
        synopsis: &["show TENSOR [--with PLUGIN] [--step N]"],
        summary: "draw a tensor through a visualiser plugin",
        description: "Hands the trits of TENSOR to a visualiser plugin and shows what it draws. TENSOR is \
            a tensor name as `layers` lists it, or a layer name for that layer's weight. With a run \
            open (`replay open`), `--step` shows the tensor as it was after that step.",
        args: &[arg("TENSOR", ValueKind::Tensor, "tensor or layer to draw")],
        options: &[
            option(
                "with",
                ValueKind::Plugin(Some(PluginRole::Visualiser)),
                "PLUGIN",
                "visualiser to draw with; the first enabled one if left out",
            ),
            option("step", ValueKind::Step, "N", "step of the open run to show the tensor at"),
        ],
        examples: &[
            example("show model.layers.0.mlp.down_proj.weight", ""),
            example("show model.layers.3.self_attn.q_proj --with trit-visualiser --step 120", ""),
        ],
        ..command()
    },
    CommandSpec {
        id: CommandId::Export,
        name: "export",
        aliases: &["convert"],
        topic: Topic::Model,
        synopsis: &["export OUT [--to hf|gguf-tq2_0|gguf-tq1_0|gguf-i2_s] [--embed-type f16|bf16|f32|q8_0|q6_k]"],
        summary: "write the loaded model as a checkpoint directory or a GGUF file",
        description: "Writes the loaded model to OUT. `--to hf` (the default) writes a Hugging Face \
            model directory (`config.json`, `model.safetensors`, `tokenizer.json`): a checkpoint \
            loaded from safetensors is copied as it is, one loaded from GGUF is written as an \
            offline-packed checkpoint. The GGUF formats write one file that llama.cpp \
            (`gguf-tq2_0`, `gguf-tq1_0`) or bitnet.cpp (`gguf-i2_s`) runs, with the tokenizer \
            and the chat template in its metadata; `--embed-type` says how the token embedding \
            (and an untied output projection) is stored. Trits and scales are copied, never \
            quantised again; a matrix whose rows do not fill whole 256-weight blocks is written \
            as F16 trits with a scale tensor, and the report says so. With a run open \
            (`replay open`), the model is the one at the current replay step. `convert` is \
            another name for this command.",
        args: &[arg("OUT", ValueKind::Path, "directory (hf) or .gguf file to write")],
        options: &[
            option("to", ValueKind::Choice(ExportFormat::NAMES), "", "the format to write")
                .with_default("hf"),
            option(
                "embed-type",
                ValueKind::Choice(EmbedType::NAMES),
                "",
                "type of the embedding and an untied output in GGUF",
            )
            .with_default("f16"),
        ],
        examples: &[
            example("export /tmp/snapshot", "a Hugging Face model directory"),
            example("export /tmp/model.gguf --to gguf-tq2_0", "for llama.cpp"),
            example(
                "convert /tmp/model-i2s.gguf --to gguf-i2_s --embed-type q8_0",
                "for bitnet.cpp, with an 8-bit embedding",
            ),
        ],
        ..command()
    },
    CommandSpec {
        id: CommandId::Synth,
        name: "synth",
        topic: Topic::Model,
        synopsis: &["synth --shape bitnet-2b4t|tiny [--seed S] --out DIR"],
        summary: "write a random ternary checkpoint of a real model's shape",
        description: "Writes a BitNet b1.58 checkpoint with random trits and scales to DIR, in the \
            layout of the published model (offline-packed `uint8` trits, bf16 scales, \
            embeddings and norms) and with a byte-level tokenizer of the right vocabulary size. \
            It runs and benchmarks like the real model, so speed and memory can be measured \
            without downloading weights, but it writes gibberish. The same shape and seed give \
            the same bytes.",
        options: &[
            option(
                "shape",
                ValueKind::Choice(SynthShape::NAMES),
                "",
                "bitnet-2b4t (microsoft/bitnet-b1.58-2B-4T's shapes, 1.2 GB) or tiny (2 layers, \
                 hidden 128)",
            )
            .required(),
            option("seed", SEED, "S", "seed of the random weights").with_default("0"),
            option("out", ValueKind::Dir, "DIR", "directory to write").required(),
        ],
        examples: &[
            example("synth --shape bitnet-2b4t --seed 1 --out /tmp/b2b4t", "1.2 GB on disk"),
            example("synth --shape tiny --out /tmp/tiny", ""),
        ],
        ..command()
    },
    // ---- generation --------------------------------------------------------------------------
    CommandSpec {
        id: CommandId::Generate,
        name: "generate",
        topic: Topic::Generation,
        synopsis: &["generate PROMPT [--max-tokens N] [--temperature T] [--top-k K] [--top-p P] \
            [--seed S] [--tracer PLUGIN] [--stop TEXT] [--greedy]"],
        summary: "continue a prompt with the loaded model",
        description: "Generates text after PROMPT, printing tokens as they come. Sampling is seeded: the \
            same prompt, options and seed give the same text. `--top-k` and `--top-p` narrow the \
            candidates before sampling; `--greedy` takes the likeliest token every time and so admits \
            no sampling options. Quote a prompt that has spaces in it.",
        args: &[arg("PROMPT", ValueKind::Text, "text to continue")],
        options: &GENERATION_OPTIONS,
        examples: &[
            example("generate \"Once upon a time\"", "64 tokens at temperature 0.8"),
            example(
                "generate \"To be\" --max-tokens 32 --temperature 0.7 --top-p 0.9 --seed 7",
                "",
            ),
            example("generate \"The\" --greedy --tracer gay-tracer", "colour every token"),
            example("generate \"Q: why is the sky blue?\\nA:\" --stop \"\\n\"", "one line of answer"),
        ],
        ..command()
    },
    CommandSpec {
        id: CommandId::Chat,
        name: "chat",
        topic: Topic::Generation,
        synopsis: &[
            "chat MESSAGE [--system TEXT] [--reset] [--template FILE] [--max-tokens N] \
             [--temperature T] [--top-k K] [--top-p P] [--seed S] [--tracer PLUGIN] [--stop TEXT] \
             [--greedy]",
            "chat --reset [--system TEXT] [--template FILE]",
        ],
        summary: "talk with the loaded model, one turn at a time",
        description: "Says MESSAGE to the loaded model as the user and prints its reply as it comes. \
            The conversation stays in the session: the next `chat` continues it, `--reset` or \
            loading a model starts a new one, and `--system` starts a new one with TEXT as its \
            system message. The prompt is the whole conversation rendered by the model's chat \
            template (`chat_template` in `tokenizer_config.json`, `chat_template.jinja`, or \
            `tokenizer.chat_template` of a GGUF file); a model without one needs `--template \
            FILE`, a Jinja file that then serves the rest of the conversation. The reply ends at \
            the model's end-of-turn tokens (`<|eot_id|>`, `<|im_end|>`, end of text). Each turn \
            reads only what is new: the keys and values of the part the conversation shares \
            with the previous turn are kept. Sampling works as in `generate`, with the same \
            options and defaults.",
        args: &[optional_arg("MESSAGE", ValueKind::Text, "what the user says")],
        options: &CHAT_OPTIONS,
        examples: &[
            example("chat \"Hello! Who are you?\"", "starts or continues the conversation"),
            example(
                "chat \"Explain ternary weights in one sentence.\" --system \"You are terse.\" --greedy",
                "a new conversation with a system message",
            ),
            example("chat --reset", "forget the conversation"),
            example("chat \"Hi\" --template plain.jinja", "a model without a chat template"),
        ],
        ..command()
    },
    CommandSpec {
        id: CommandId::Logits,
        name: "logits",
        topic: Topic::Generation,
        synopsis: &[
            "logits PROMPT [--top N] [--out FILE]",
            "logits --ids N,N,... [--top N] [--out FILE]",
        ],
        summary: "the next-token logits after a prompt or token ids",
        description: "Runs the loaded model once over PROMPT (tokenized) or over the given token ids and \
            lists the highest logits for the next token, with the tokens they stand for. `--out` \
            also writes the logits of every position, as the output projection computes them \
            (`load --head-precision exact` for the checkpoint's own): a `.safetensors` file holds \
            one f32 tensor `logits` of shape [positions, vocabulary]; a `.json` file holds \
            `{\"shape\", \"ids\", \"logits\"}` with one row per position.",
        args: &[optional_arg("PROMPT", ValueKind::Text, "text to run the model on")],
        options: &[
            option("ids", ValueKind::TokenIds, "N,N,...", "token ids to run the model on, instead of a PROMPT"),
            option("top", COUNT, "N", "how many of the highest logits to list").with_default("10"),
            option(
                "out",
                ValueKind::Path,
                "FILE",
                "write every position's logits to FILE (.safetensors or .json)",
            ),
        ],
        examples: &[
            example("logits \"The capital of France is\"", ""),
            example("logits --ids 1,17,300 --top 5", ""),
            example("logits --ids 1,17,300 --out /tmp/logits.safetensors", "for a parity test"),
        ],
        ..command()
    },
    CommandSpec {
        id: CommandId::Eval,
        name: "eval",
        topic: Topic::Generation,
        synopsis: &[],
        summary: "measure the loaded model on data",
        description: "Measurements of the loaded model on a text file.",
        subcommands: &[CommandSpec {
            id: CommandId::EvalPpl,
            name: "ppl",
            topic: Topic::Generation,
            synopsis: &[
                "eval ppl --data FILE [--ctx N] [--stride N] [--windows N] [--compare default|PATH] [--compare-head P]",
            ],
            summary: "perplexity on a text file, and the distance to another model",
            description: "Tokenizes FILE with the model's tokenizer and scores the model's \
                next-token predictions. Without `--stride`, as llama-perplexity does: windows of N \
                tokens that do not overlap, the first token of each replaced by BOS when the \
                tokenizer adds one, the second half of each window scored. With `--stride S`, \
                Hugging Face's sliding window: a window of N tokens every S tokens, each token \
                predicted once. Prints the perplexity with its standard error. `--compare` runs \
                another model (or the same one with another `--compare-head`) on the same windows \
                and adds its perplexity, the mean KL divergence of the loaded model's next-token \
                distribution from the compared one's, and how often their likeliest tokens agree: \
                how a quantisation is judged.",
            options: &[
                option("data", ValueKind::Path, "FILE", "UTF-8 text to score").required(),
                option("ctx", COUNT, "N", "tokens per window").with_default("512"),
                option("stride", COUNT, "S", "Hugging Face's sliding windows, one every S tokens"),
                option("windows", COUNT, "N", "score at most N windows"),
                option("compare", ValueKind::Model, "default|PATH", "a model to compare with on the same windows"),
                option(
                    "compare-head",
                    ValueKind::Choice(HeadPrecision::NAMES),
                    "",
                    "how the compared model keeps its output projection",
                )
                .with_default("exact"),
            ],
            examples: &[
                example("eval ppl --data wiki.test.raw", "llama-perplexity's windows of 512"),
                example("eval ppl --data wiki.test.raw --ctx 1024 --stride 512", "sliding windows"),
                example(
                    "eval ppl --data wiki.test.raw --windows 20 --compare default --compare-head exact",
                    "after `load default --head-precision q4`: what the 4-bit head costs",
                ),
            ],
            ..command()
        }],
        examples: &[],
        ..command()
    },
    CommandSpec {
        id: CommandId::Bench,
        name: "bench",
        topic: Topic::Generation,
        synopsis: &["bench [--prompt N] [--tokens N] [--repeat R] [--seed S]"],
        summary: "prefill and decode speed of the loaded model",
        description: "Times the loaded model on this machine. After one untimed warm-up pass, each \
            of R runs prefills N token ids in one forward pass, then decodes `--tokens` tokens one \
            at a time with the KV cache, always taking the likeliest token (no sampling). The ids \
            are random but seeded, so other runtimes can be given the same work. Reports prefill \
            and decode tokens per second (median, and the range over the runs), the worker \
            threads (`--threads`), the bytes of the model's weights as loaded and the process's \
            peak resident memory (VmHWM, which includes loading). The prompt and the decoded \
            tokens must fit the model's context.",
        options: &[
            option("prompt", COUNT, "N", "token ids to prefill in one pass").with_default("64"),
            option("tokens", COUNT, "N", "tokens to decode one at a time").with_default("64"),
            option("repeat", COUNT, "R", "timed runs; the median is reported").with_default("3"),
            option("seed", SEED, "S", "seed of the prompt's token ids").with_default("1069"),
        ],
        examples: &[
            example("bench", "64 prompt tokens, 64 decoded, 3 runs"),
            example("bench --prompt 512 --tokens 128 --repeat 5", ""),
        ],
        ..command()
    },
    // ---- training ----------------------------------------------------------------------------
    CommandSpec {
        id: CommandId::Train,
        name: "train",
        topic: Topic::Training,
        synopsis: &[
            "train --data PATH [--val PATH] [--preset tiny|small|bitnet-2b4t] [--tokenizer PATH | --train-tokenizer VOCAB] \
             [--steps N] [--seq S] [--batch B] [--lr LR] [--warmup N] [--seed S] [--twin] [--quant tensor|group] \
             [--checkpoint-every K] [--layers N] [--hidden N] [--intermediate N] [--heads N] [--kv-heads N] \
             [--val-fraction F] [--min-lr-ratio R] [--weight-decay W] [--clip C] [--projection] \
             [--keep-checkpoints K] [--eval-every N] [--eval-sequences N] [--device cpu|cuda[:N] | --devices 0,1,…] \
             [--micro-batches M] [--matmul f32|tf32|bf16] [--kernels auto|f32|ternary] --out DIR",
            "train --resume DIR [--steps N] [--devices 0,1,…]",
        ],
        summary: "train a ternary model, recording every step",
        description: "Trains a BitNet b1.58 model from scratch with quantisation-aware training and \
            writes the run to DIR: checkpoints, metrics, and the morphism log that records every \
            optimiser step exactly, so that `replay` can rebuild and verify any step. The same data, \
            options, seed and thread count give the same run, trit for trit. Without `--tokenizer` or \
            `--train-tokenizer`, a tokenizer of 2048 entries is trained on the training text. \
            `--resume` continues a run from its last checkpoint with the options it was started \
            with, and with the thread count it was computed with: a session that computes with \
            another count (`--threads`) refuses to resume it.",
        options: &[
            option("data", ValueKind::Path, "PATH", "training text, UTF-8").required_unless("resume"),
            option("val", ValueKind::Path, "PATH", "validation text, evaluated at every checkpoint"),
            option(
                "preset",
                ValueKind::Choice(Preset::NAMES),
                "",
                "model shape: tiny (2 layers, d_model 128), small (8 layers, d_model 512) or \
                 bitnet-2b4t (microsoft/bitnet-b1.58-2B-4T's shapes)",
            )
            .with_default("tiny"),
            option("tokenizer", ValueKind::Path, "PATH", "`tokenizer.json` to use")
                .with_conflicts(&["train-tokenizer"]),
            option(
                "train-tokenizer",
                ValueKind::Int { min: 2, max: u32::MAX as u64 },
                "VOCAB",
                "train a tokenizer of VOCAB entries on the training text first (2048 when no \
                 tokenizer option is given)",
            ),
            option(
                "steps",
                STEPS,
                "N",
                "optimiser steps to run; with `--resume`, the step to carry on to",
            )
            .with_default("200"),
            option("seq", COUNT, "S", "tokens per training sequence").with_default("64"),
            option("batch", COUNT, "B", "sequences per optimiser step").with_default("8"),
            option("lr", POSITIVE, "LR", "peak learning rate").with_default("3e-3"),
            option("warmup", SEED, "N", "linear warm-up steps before the cosine decay").with_default("10"),
            option("seed", SEED, "S", "seed of the initial weights and the data order").with_default("1069"),
            option("twin", ValueKind::Flag, "", "also train a full-precision twin on the same batches, to compare"),
            option("quant", ValueKind::Choice(ScaleGranularity::NAMES), "", "absmean scale per tensor or per group of weights")
                .with_default("tensor"),
            option("checkpoint-every", STEPS, "K", "write a checkpoint every K steps").with_default("50"),
            option("layers", COUNT, "N", "change the preset: decoder layers"),
            option("hidden", COUNT, "N", "change the preset: model width (d_model)"),
            option("intermediate", COUNT, "N", "change the preset: feed-forward width"),
            option("heads", COUNT, "N", "change the preset: query heads"),
            option("kv-heads", COUNT, "N", "change the preset: key/value heads"),
            option(
                "val-fraction",
                FRACTION,
                "F",
                "share of the training text held out for validation when there is no `--val`",
            )
            .with_default("0.1"),
            option("min-lr-ratio", UNIT, "R", "the cosine schedule decays to lr × R").with_default("0.1"),
            option("weight-decay", NON_NEGATIVE, "W", "AdamW weight decay").with_default("0.1"),
            option("clip", NON_NEGATIVE, "C", "clip the global gradient norm to C (0: off)").with_default("1"),
            option("projection", ValueKind::Flag, "", "snap latent weights to trit × scale after every step"),
            option(
                "matmul",
                ValueKind::Choice(tritlab_train::Matmul::NAMES),
                "",
                "how a GPU multiplies matrices: f32, TF32 tensor cores, or bf16 linear layers (recorded; replay multiplies alike)",
            )
            .with_default("f32"),
            option(
                "keep-checkpoints",
                SEED,
                "K",
                "keep only the newest K checkpoints besides step 0 (0: keep all)",
            )
            .with_default("0"),
            option("eval-every", SEED, "N", "validate every N steps (0: only at the end)").with_default("0"),
            option("eval-sequences", COUNT, "N", "held-out sequences for periodic validation").with_default("64"),
            option(
                "device",
                ValueKind::Text,
                "DEVICE",
                "where to compute: cpu, or cuda / cuda:N for an NVIDIA GPU (a tritlab built with \
                 scripts/build-cuda.sh); a resumed run continues on the kind of device it started on",
            )
            .with_default("cpu")
            .with_conflicts(&["devices"]),
            option(
                "devices",
                ValueKind::Text,
                "LIST",
                "data parallel: the GPUs (0,1 or cuda:0,cuda:1) that each hold a copy of the world \
                 and compute their share of every batch's micro-batches, exchanging gradients \
                 through NCCL. The step's bits depend on --micro-batches only, so `replay verify` \
                 recomputes the run on one GPU, and with --resume the run continues on any GPUs of \
                 the same model whose count divides its micro-batches",
            ),
            option(
                "micro-batches",
                COUNT,
                "M",
                "split each batch into M micro-batches (M divides --batch) whose gradients are \
                 summed in order: gradient accumulation, and the work a data-parallel run shares \
                 out (M a multiple of the devices); recorded, replay splits alike",
            )
            .with_default("1"),
            option(
                "kernels",
                ValueKind::Choice(ProductKernels::NAMES),
                "",
                "how a step computes its products: ternary (the engine's integer product forward, \
                 the gradients and output head on AMX tiles: Intel Sapphire Rapids or later), f32 \
                 (candle's f32 products, on every CPU and GPU), or auto (ternary where the CPU has \
                 AMX, else f32). run.json records the path; a run resumes and replays on it",
            )
            .with_default("auto"),
            option("out", ValueKind::Dir, "DIR", "run directory to create").required_unless("resume"),
            option("resume", ValueKind::Dir, "DIR", "run directory to continue").with_conflicts(&[
                "data",
                "val",
                "preset",
                "tokenizer",
                "train-tokenizer",
                "seq",
                "batch",
                "lr",
                "warmup",
                "seed",
                "twin",
                "quant",
                "checkpoint-every",
                "layers",
                "hidden",
                "intermediate",
                "heads",
                "kv-heads",
                "val-fraction",
                "min-lr-ratio",
                "weight-decay",
                "clip",
                "projection",
                "keep-checkpoints",
                "eval-every",
                "eval-sequences",
                "device",
                "micro-batches",
                "matmul",
                "kernels",
                "out",
            ]),
        ],
        examples: &[
            example("train --data corpus.txt --out runs/tiny", "200 steps of the tiny preset"),
            example(
                "train --data corpus.txt --val val.txt --preset small --train-tokenizer 4096 \\\n    --steps 1000 --lr 1e-3 --quant group --out runs/small",
                "a longer run with its own tokenizer",
            ),
            example("train --resume runs/tiny --steps 400", "carry on to step 400"),
        ],
        ..command()
    },
    CommandSpec {
        id: CommandId::Log,
        name: "log",
        topic: Topic::Training,
        synopsis: &["log [RUN_DIR]"],
        summary: "the steps of a training run",
        description: "Lists the recorded steps of RUN_DIR, or of the run opened with `replay open` when \
            RUN_DIR is left out: loss, learning rate and trit flips per step. A run directory whose \
            name is a subcommand is written `./show`.",
        args: &[optional_arg("RUN_DIR", ValueKind::Dir, "run directory; the open run if left out")],
        subcommands: &[
            CommandSpec {
                id: CommandId::LogShow,
                name: "show",
                topic: Topic::Training,
                synopsis: &["log show STEP"],
                summary: "one step's record in full",
                description: "Shows one step of the open run: its scalars (loss, learning rate, \
                    gradient norm), the hashes of the weights before and after it, and each layer's \
                    3x3 trit transitions.",
                args: &[arg("STEP", ValueKind::Step, "step to show")],
                examples: &[example("log show 120", "")],
                ..command()
            },
            CommandSpec {
                id: CommandId::LogPlot,
                name: "plot",
                topic: Topic::Training,
                synopsis: &["log plot loss|flips|trits"],
                summary: "plot a series over the open run's steps",
                description: "Plots the loss (with validation loss where it was measured), the number of \
                    trits flipped per step, or the counts of -1, 0 and +1 weights per step.",
                args: &[arg("SERIES", ValueKind::Choice(PlotSeries::NAMES), "what to plot")],
                examples: &[example("log plot loss", ""), example("log plot flips", "")],
                ..command()
            },
        ],
        examples: &[example("log", "the open run"), example("log runs/tiny", "")],
        ..command()
    },
    // ---- replay ------------------------------------------------------------------------------
    CommandSpec {
        id: CommandId::Replay,
        name: "replay",
        topic: Topic::Replay,
        synopsis: &[],
        summary: "open, verify and export recorded training runs",
        description: "A run directory written by `train` can be replayed: every step's trit flips are \
            stored exactly, so the weights at any step are rebuilt from the nearest checkpoint and \
            checked against the hashes in the log.",
        subcommands: &[
            CommandSpec {
                id: CommandId::ReplayOpen,
                name: "open",
                topic: Topic::Replay,
                synopsis: &["replay open RUN_DIR"],
                summary: "open a run for replay",
                description: "Opens the run in RUN_DIR at its last step. `seek`, `step` and `back` then \
                    move through it; `info`, `layers`, `show`, `generate` and `export` see the weights at \
                    the current step.",
                args: &[arg("RUN_DIR", ValueKind::Dir, "run directory written by `train`")],
                examples: &[example("replay open runs/tiny", "")],
                ..command()
            },
            CommandSpec {
                id: CommandId::ReplayVerify,
                name: "verify",
                topic: Topic::Replay,
                synopsis: &["replay verify [--from A] [--to B] [--device cpu|cuda[:N]]"],
                summary: "rebuild the open run's steps and check every hash",
                description: "Replays the open run from step A to step B (the whole run by default), \
                    checking that every step turns the weights whose hash the log records before it \
                    into those whose hash it records after it. A run is recomputed bit for bit on the \
                    kind of device it was computed on (the CPU, or a GPU of the same model). A GPU run \
                    checked on the CPU (or on another GPU model) is checked as far as floats allow: \
                    every checkpoint's trits against the step-0 trits plus the logged flips, and the \
                    recomputed losses against the logged ones.",
                options: &[
                    option("from", ValueKind::Step, "A", "first step to check; the run's first if left out"),
                    option("to", ValueKind::Step, "B", "last step to check; the run's last if left out"),
                    option(
                        "device",
                        ValueKind::Text,
                        "DEVICE",
                        "where to recompute: cpu, cuda or cuda:N; the run's own device when this \
                         build has it, else the CPU",
                    ),
                ],
                examples: &[example("replay verify", ""), example("replay verify --from 100 --to 150", "")],
                ..command()
            },
            CommandSpec {
                id: CommandId::ReplayExport,
                name: "export",
                topic: Topic::Replay,
                synopsis: &["replay export STEP DIR"],
                summary: "write the weights at a step as a checkpoint",
                description: "Rebuilds the open run's weights at STEP and writes them to DIR as a model \
                    directory that `load` reads.",
                args: &[
                    arg("STEP", ValueKind::Step, "step whose weights to write"),
                    arg("DIR", ValueKind::Dir, "directory to write"),
                ],
                examples: &[example("replay export 150 /tmp/step150", "")],
                ..command()
            },
        ],
        examples: &[],
        ..command()
    },
    CommandSpec {
        id: CommandId::Seek,
        name: "seek",
        topic: Topic::Replay,
        synopsis: &["seek STEP"],
        summary: "move the open run to a step",
        description: "Moves the open run to the weights after STEP (0 is the state before the first \
            step).",
        args: &[arg("STEP", ValueKind::Step, "step to move to")],
        examples: &[example("seek 0", "the initial weights"), example("seek 120", "")],
        ..command()
    },
    CommandSpec {
        id: CommandId::Step,
        name: "step",
        topic: Topic::Replay,
        synopsis: &["step [N]"],
        summary: "move the open run forward",
        description: "Applies the next N recorded steps to the open run's weights.",
        args: &[ArgSpec {
            name: "N",
            kind: STEPS,
            required: false,
            default: Some("1"),
            summary: "steps to move forward",
        }],
        examples: &[example("step", "one step"), example("step 10", "")],
        ..command()
    },
    CommandSpec {
        id: CommandId::Back,
        name: "back",
        topic: Topic::Replay,
        synopsis: &["back [N]"],
        summary: "move the open run back",
        description: "Undoes the last N steps of the open run's weights; every recorded flip stores both \
            trits, so going back is exact.",
        args: &[ArgSpec {
            name: "N",
            kind: STEPS,
            required: false,
            default: Some("1"),
            summary: "steps to move back",
        }],
        examples: &[example("back", "one step"), example("back 5", "")],
        ..command()
    },
    // ---- plugins -----------------------------------------------------------------------------
    CommandSpec {
        id: CommandId::Plugins,
        name: "plugins",
        topic: Topic::Plugins,
        synopsis: &["plugins"],
        summary: "list the loaded plugins",
        description: "Lists every loaded plugin with its kind (tracer, checker or visualiser), version, \
            whether it is enabled, and the options it accepts.",
        examples: &[example("plugins", "")],
        ..command()
    },
    CommandSpec {
        id: CommandId::Plugin,
        name: "plugin",
        topic: Topic::Plugins,
        synopsis: &[],
        summary: "load, enable, disable and configure plugins",
        description: "Plugins are WebAssembly components that run sandboxed: they are granted nothing \
            and every call is bounded in time, memory and output size.",
        subcommands: &[
            CommandSpec {
                id: CommandId::PluginLoad,
                name: "load",
                topic: Topic::Plugins,
                synopsis: &["plugin load PATH"],
                summary: "load a plugin component",
                description: "Loads the WebAssembly component at PATH and enables it.",
                args: &[arg("PATH", ValueKind::Path, "a `.wasm` component")],
                examples: &[example("plugin load target/plugins/example.wasm", "")],
                ..command()
            },
            CommandSpec {
                id: CommandId::PluginEnable,
                name: "enable",
                topic: Topic::Plugins,
                synopsis: &["plugin enable NAME"],
                summary: "enable a loaded plugin",
                description: "Enables a loaded plugin again after `plugin disable`.",
                args: &[arg("NAME", ValueKind::Plugin(None), "plugin to enable")],
                examples: &[example("plugin enable gay-tracer", "")],
                ..command()
            },
            CommandSpec {
                id: CommandId::PluginDisable,
                name: "disable",
                topic: Topic::Plugins,
                synopsis: &["plugin disable NAME"],
                summary: "disable a plugin without unloading it",
                description: "A disabled plugin stays loaded, keeps its options and is skipped until it is \
                    enabled again.",
                args: &[arg("NAME", ValueKind::Plugin(None), "plugin to disable")],
                examples: &[example("plugin disable gay-tracer", "")],
                ..command()
            },
            CommandSpec {
                id: CommandId::PluginSet,
                name: "set",
                topic: Topic::Plugins,
                synopsis: &["plugin set NAME KEY VALUE"],
                summary: "set one of a plugin's options",
                description: "Sets option KEY of plugin NAME to VALUE. The options a plugin accepts, with \
                    their defaults, are listed by `plugins`; the plugin checks the value.",
                args: &[
                    arg("NAME", ValueKind::Plugin(None), "plugin to configure"),
                    arg("KEY", ValueKind::Name, "option name"),
                    arg("VALUE", ValueKind::Text, "option value"),
                ],
                examples: &[example("plugin set gay-tracer seed 42", "a new colour stream")],
                ..command()
            },
        ],
        examples: &[],
        ..command()
    },
    CommandSpec {
        id: CommandId::Check,
        name: "check",
        topic: Topic::Plugins,
        synopsis: &["check PLUGIN [--on trace|weights|step]"],
        summary: "run a checker plugin",
        description: "Runs a checker plugin and lists its verdicts. `--on` picks what it checks: the \
            annotated trace of the last generation, the loaded model's weights, or the current step of \
            the open run; without it, the checker gets every one of these there is.",
        args: &[arg("PLUGIN", ValueKind::Plugin(Some(PluginRole::Checker)), "checker to run")],
        options: &[option("on", ValueKind::Choice(CheckTarget::NAMES), "", "what to check")],
        examples: &[
            example("check triad-checker --on trace", "GF(3) balance of the last colour trace"),
            example("check triad-checker --on weights", ""),
        ],
        ..command()
    },
    // ---- session -----------------------------------------------------------------------------
    CommandSpec {
        id: CommandId::Help,
        name: "help",
        topic: Topic::Session,
        synopsis: &["help [COMMAND]"],
        summary: "list the commands, or explain one",
        description: "Without an argument, lists the commands by topic. With one, shows the command's \
            synopsis, arguments, options with their defaults, and examples.",
        args: &[optional_arg("COMMAND", ValueKind::Command, "command to explain")],
        examples: &[example("help", ""), example("help generate", "")],
        ..command()
    },
    CommandSpec {
        id: CommandId::Clear,
        name: "clear",
        topic: Topic::Session,
        synopsis: &["clear"],
        summary: "clear the screen or output pane",
        description: "Clears the terminal, or the workbench's output pane. Nothing else changes.",
        examples: &[example("clear", "")],
        ..command()
    },
    CommandSpec {
        id: CommandId::Quit,
        name: "quit",
        aliases: &["exit"],
        topic: Topic::Session,
        synopsis: &["quit", "exit"],
        summary: "end the session",
        description: "Ends the session. A run directory keeps every step recorded so far, and \
            `train --resume` carries it on.",
        examples: &[example("quit", ""), example("exit", "")],
        ..command()
    },
    CommandSpec {
        id: CommandId::Rust,
        name: ":rust",
        topic: Topic::Session,
        synopsis: &[":rust CODE", ":rust … :end"],
        summary: "a Rust snippet",
        description: "A line starting with `:rust ` holds a Rust snippet: the rest of the line. A line \
            that is exactly `:rust` starts a snippet of several lines, which ends at a line that is \
            exactly `:end`. The code is kept verbatim: no quoting, escapes or comments apply.",
        args: &[arg("CODE", ValueKind::Code, "the snippet")],
        examples: &[
            example(":rust println!(\"{}\", 6 * 7);", ""),
            example(":rust\nlet xs = [1, 0, -1];\nprintln!(\"{}\", xs.iter().sum::<i32>());\n:end", ""),
        ],
        ..command()
    },
];

/// The options of `generate`, which `chat` takes too: one definition, one set of defaults.
const GENERATION_OPTIONS: [OptionSpec; 8] = [
    option("max-tokens", COUNT, "N", "tokens to generate at most").with_default("64"),
    option(
        "temperature",
        NON_NEGATIVE,
        "T",
        "softmax temperature; lower is more predictable",
    )
    .with_default("0.8"),
    option(
        "top-k",
        COUNT,
        "K",
        "sample among the K likeliest tokens only",
    ),
    option(
        "top-p",
        PROBABILITY,
        "P",
        "sample among the likeliest tokens whose probabilities add up to P",
    ),
    option("seed", SEED, "S", "seed of the sampler").with_default("1069"),
    option(
        "tracer",
        ValueKind::Plugin(Some(PluginRole::Tracer)),
        "PLUGIN",
        "tracer plugin that annotates every generated token",
    ),
    option(
        "stop",
        ValueKind::Text,
        "TEXT",
        "stop as soon as the output contains TEXT",
    ),
    option(
        "greedy",
        ValueKind::Flag,
        "",
        "always take the likeliest token",
    )
    .with_conflicts(&["temperature", "top-k", "top-p"]),
];

/// `chat`'s own options, then [`GENERATION_OPTIONS`].
const CHAT_OPTIONS: [OptionSpec; 11] = {
    let own = [
        option(
            "system",
            ValueKind::Text,
            "TEXT",
            "start a new conversation with TEXT as its system message",
        ),
        option("reset", ValueKind::Flag, "", "start a new conversation"),
        option(
            "template",
            ValueKind::Path,
            "FILE",
            "a Jinja chat template to use instead of the model's, for the rest of the conversation",
        ),
    ];
    let mut all = [own[0]; 11];
    let mut i = 0;
    while i < own.len() {
        all[i] = own[i];
        i += 1;
    }
    let mut j = 0;
    while j < GENERATION_OPTIONS.len() {
        all[own.len() + j] = GENERATION_OPTIONS[j];
        j += 1;
    }
    all
};

/// Token counts and sizes that must fit a `u32` and be at least 1.
const COUNT: ValueKind = ValueKind::Int {
    min: 1,
    max: u32::MAX as u64,
};
/// Step counts.
const STEPS: ValueKind = ValueKind::Int {
    min: 1,
    max: u64::MAX,
};
const SEED: ValueKind = ValueKind::Int {
    min: 0,
    max: u64::MAX,
};
const NON_NEGATIVE: ValueKind = ValueKind::Float {
    min: 0.0,
    min_inclusive: true,
    max: f32::INFINITY,
    max_inclusive: false,
};
const POSITIVE: ValueKind = ValueKind::Float {
    min: 0.0,
    min_inclusive: false,
    max: f32::INFINITY,
    max_inclusive: false,
};
/// A share strictly between none and all.
const FRACTION: ValueKind = ValueKind::Float {
    min: 0.0,
    min_inclusive: false,
    max: 1.0,
    max_inclusive: false,
};
/// A ratio from 0 to 1, both included.
const UNIT: ValueKind = ValueKind::Float {
    min: 0.0,
    min_inclusive: true,
    max: 1.0,
    max_inclusive: true,
};
const PROBABILITY: ValueKind = ValueKind::Float {
    min: 0.0,
    min_inclusive: false,
    max: 1.0,
    max_inclusive: true,
};

/// The fields most commands leave empty, for `..command()`. Every entry sets its own `id`,
/// `name`, `topic`, synopsis and summary; the tests catch one that does not (its examples would
/// parse to another command).
const fn command() -> CommandSpec {
    CommandSpec {
        id: CommandId::Info,
        name: "",
        aliases: &[],
        topic: Topic::Session,
        synopsis: &[],
        summary: "",
        description: "",
        args: &[],
        options: &[],
        subcommands: &[],
        examples: &[],
    }
}

const fn example(input: &'static str, note: &'static str) -> Example {
    Example { input, note }
}

const fn arg(name: &'static str, kind: ValueKind, summary: &'static str) -> ArgSpec {
    ArgSpec {
        name,
        kind,
        required: true,
        default: None,
        summary,
    }
}

const fn optional_arg(name: &'static str, kind: ValueKind, summary: &'static str) -> ArgSpec {
    ArgSpec {
        name,
        kind,
        required: false,
        default: None,
        summary,
    }
}

const fn option(
    name: &'static str,
    kind: ValueKind,
    placeholder: &'static str,
    summary: &'static str,
) -> OptionSpec {
    OptionSpec {
        name,
        kind,
        placeholder,
        default: None,
        presence: Presence::Optional,
        conflicts: &[],
        summary,
    }
}

impl OptionSpec {
    const fn with_default(mut self, default: &'static str) -> Self {
        self.default = Some(default);
        self
    }

    const fn with_conflicts(mut self, conflicts: &'static [&'static str]) -> Self {
        self.conflicts = conflicts;
        self
    }

    const fn required(mut self) -> Self {
        self.presence = Presence::Required;
        self
    }

    const fn required_unless(mut self, other: &'static str) -> Self {
        self.presence = Presence::RequiredUnless(other);
        self
    }
}

/// The top-level command called `name` (or aliased so).
pub fn find_command(name: &str) -> Option<&'static CommandSpec> {
    COMMANDS.iter().find(|c| c.answers_to(name))
}

/// Every name a command can be typed as, canonical names first, then aliases.
pub fn command_names() -> impl Iterator<Item = &'static str> {
    COMMANDS
        .iter()
        .map(|c| c.name)
        .chain(COMMANDS.iter().flat_map(|c| c.aliases.iter().copied()))
}

/// The table entry, command or subcommand, with this id.
pub fn spec_of(id: CommandId) -> Option<&'static CommandSpec> {
    COMMANDS
        .iter()
        .flat_map(|c| std::iter::once(c).chain(c.subcommands.iter()))
        .find(|c| c.id == id)
}
