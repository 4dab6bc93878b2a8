//! The typed commands the parser produces.
//!
//! Every default is already filled in, so the code that runs a command never looks a default up:
//! a field is `Option` only where leaving it out means something other than a fixed value
//! (no `--top-k`: no top-k cut). `Display` (in `render.rs`) writes the canonical text of a
//! command, which parses back to the same value.

use std::fmt;
use std::path::PathBuf;

use super::spec::CommandId;

/// Declares a closed set of keywords: the enum, its words, and the conversions both ways, so the
/// command table's choices and the parser's mapping come from one list.
macro_rules! keywords {
    (
        $(#[$meta:meta])*
        pub enum $name:ident { $( $(#[$vmeta:meta])* $variant:ident = $word:literal ),+ $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $( $(#[$vmeta])* $variant ),+ }

        impl $name {
            /// Every value, in the order help lists them.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// The words for [`Self::ALL`], as typed.
            pub const NAMES: &'static [&'static str] = &[$($word),+];

            /// The word for this value, as typed.
            pub const fn name(self) -> &'static str {
                match self { $($name::$variant => $word),+ }
            }

            /// The value a word stands for.
            pub fn from_name(word: &str) -> Option<Self> {
                match word { $($word => Some($name::$variant),)+ _ => None }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

keywords! {
    /// Model size for `train --preset`.
    pub enum Preset {
        Tiny = "tiny",
        Small = "small",
        /// microsoft/bitnet-b1.58-2B-4T's shapes: far too large to train on a laptop, but the
        /// same code path.
        Bitnet2b4t = "bitnet-2b4t",
    }
}

keywords! {
    /// How `load --head-precision` keeps the output projection: as stored, or converted into
    /// one of the kernels' head formats (fewer bytes per generated token, a bounded error).
    pub enum HeadPrecision {
        /// The checkpoint's own matrix, multiplied in its stored dtype.
        Exact = "exact",
        /// bfloat16 (lossless for bf16 checkpoints such as 2B-4T).
        Bf16 = "bf16",
        /// int8 with one scale per row.
        Int8 = "int8",
        /// 6-bit integers with a bf16 scale per 32 weights.
        Q6 = "q6",
        /// 4-bit integers with a bf16 scale per 32 weights.
        Q4 = "q4",
    }
}

impl HeadPrecision {
    /// What `load` uses when `--head-precision` is not given (and what the session loads its
    /// default model with): the smallest format whose cost was measured as negligible on a
    /// trained model. On the default model over all of Tiny Shakespeare (`eval ppl --compare
    /// default`), int8 changed the perplexity by −0.01% and kept the likeliest token in 99.3% of
    /// the predictions; q6 kept it in 97.8% and q4 in 91.7%, so those are opt-in.
    pub const DEFAULT: HeadPrecision = HeadPrecision::Int8;
}

keywords! {
    /// How `load --packing` keeps the ternary layers in memory. Both give the same products bit
    /// for bit; they differ in bytes read per token and in decoding work.
    pub enum Packing {
        /// 2 bits per trit: fast on every CPU.
        I2 = "i2",
        /// 1.6 bits per trit (five per byte): 20% fewer bytes per token, more decoding work;
        /// decoded in registers on x86-64 (AVX2, AVX-512), through a slower table elsewhere.
        T1 = "t1",
    }
}

impl Packing {
    /// What `load` uses when `--packing` is not given.
    pub const DEFAULT: Packing = Packing::I2;
}

keywords! {
    /// What `export --to` writes.
    pub enum ExportFormat {
        /// A Hugging Face model directory (`config.json`, `model.safetensors`, `tokenizer.json`).
        Hf = "hf",
        /// GGUF with llama.cpp's TQ2_0 blocks: 2 bits per trit, a scale per 256 weights.
        GgufTq2_0 = "gguf-tq2_0",
        /// GGUF with llama.cpp's TQ1_0 blocks: 1.6 bits per trit, a scale per 256 weights.
        GgufTq1_0 = "gguf-tq1_0",
        /// GGUF with bitnet.cpp's I2_S: 2 bits per trit, one scale per tensor.
        GgufI2S = "gguf-i2_s",
    }
}

keywords! {
    /// The type of the token embedding (and of an untied output projection) in a GGUF file
    /// (`export --embed-type`).
    pub enum EmbedType {
        F16 = "f16",
        Bf16 = "bf16",
        F32 = "f32",
        Q8_0 = "q8_0",
        Q6K = "q6_k",
    }
}

keywords! {
    /// The shape of a random checkpoint (`synth --shape`).
    pub enum SynthShape {
        /// microsoft/bitnet-b1.58-2B-4T's shapes: 30 layers, hidden 2560, vocabulary 128256.
        Bitnet2b4t = "bitnet-2b4t",
        /// 2 layers, hidden 128, vocabulary 512.
        Tiny = "tiny",
    }
}

keywords! {
    /// How many absmean scales ternary weights get during training (`train --quant`).
    pub enum ScaleGranularity {
        /// One scale per weight tensor, as BitNet b1.58 does.
        Tensor = "tensor",
        /// One scale per group of consecutive weights in a row.
        Group = "group",
    }
}

keywords! {
    /// How a QAT step computes its products (`train --kernels`).
    pub enum ProductKernels {
        /// The ternary kernels where the CPU has AMX tiles, f32 elsewhere.
        Auto = "auto",
        /// candle's f32 products, on every CPU and GPU.
        F32 = "f32",
        /// The engine's integer product forward, AMX tiles backward and for the output head.
        Ternary = "ternary",
    }
}

keywords! {
    /// A series over a run's steps for `log plot`.
    pub enum PlotSeries {
        /// Training loss (and validation loss where it was measured).
        Loss = "loss",
        /// Trits changed per step.
        Flips = "flips",
        /// Counts of −1, 0 and +1 weights per step.
        Trits = "trits",
    }
}

keywords! {
    /// What `check --on` hands a checker plugin.
    pub enum CheckTarget {
        /// The annotated trace of the last generation.
        Trace = "trace",
        /// The loaded model's ternary weights.
        Weights = "weights",
        /// The current step of the open run.
        Step = "step",
    }
}

/// One parsed command.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Help(Help),
    Load(Load),
    Info,
    Layers,
    Verify(Verify),
    Show(Show),
    Export(Export),
    Synth(Synth),
    Generate(Generate),
    Chat(Chat),
    Logits(Logits),
    Bench(Bench),
    Train(Train),
    Log(Log),
    Replay(Replay),
    Eval(Eval),
    Seek(Seek),
    Step(Step),
    Back(Back),
    Plugins,
    Plugin(Plugin),
    Check(Check),
    Clear,
    Quit,
    /// A Rust snippet, verbatim: the text after `:rust` on one line (trimmed), or the lines
    /// between a `:rust` line and an `:end` line joined with `\n`.
    Rust(String),
}

impl Command {
    /// Which entry of the command table this command came from.
    pub fn id(&self) -> CommandId {
        match self {
            Command::Help(_) => CommandId::Help,
            Command::Load(_) => CommandId::Load,
            Command::Info => CommandId::Info,
            Command::Layers => CommandId::Layers,
            Command::Verify(_) => CommandId::Verify,
            Command::Show(_) => CommandId::Show,
            Command::Export(_) => CommandId::Export,
            Command::Synth(_) => CommandId::Synth,
            Command::Generate(_) => CommandId::Generate,
            Command::Chat(_) => CommandId::Chat,
            Command::Logits(_) => CommandId::Logits,
            Command::Bench(_) => CommandId::Bench,
            Command::Train(_) => CommandId::Train,
            Command::Log(Log::Steps { .. }) => CommandId::Log,
            Command::Log(Log::Show { .. }) => CommandId::LogShow,
            Command::Log(Log::Plot { .. }) => CommandId::LogPlot,
            Command::Replay(Replay::Open { .. }) => CommandId::ReplayOpen,
            Command::Replay(Replay::Verify { .. }) => CommandId::ReplayVerify,
            Command::Replay(Replay::Export { .. }) => CommandId::ReplayExport,
            Command::Eval(Eval::Ppl(_)) => CommandId::EvalPpl,
            Command::Seek(_) => CommandId::Seek,
            Command::Step(_) => CommandId::Step,
            Command::Back(_) => CommandId::Back,
            Command::Plugins => CommandId::Plugins,
            Command::Plugin(Plugin::Load { .. }) => CommandId::PluginLoad,
            Command::Plugin(Plugin::Enable { .. }) => CommandId::PluginEnable,
            Command::Plugin(Plugin::Disable { .. }) => CommandId::PluginDisable,
            Command::Plugin(Plugin::Set { .. }) => CommandId::PluginSet,
            Command::Check(_) => CommandId::Check,
            Command::Clear => CommandId::Clear,
            Command::Quit => CommandId::Quit,
            Command::Rust(_) => CommandId::Rust,
        }
    }
}

/// `help [COMMAND]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Help {
    /// The command's canonical name (an alias such as `exit` is resolved to `quit`); `None` for
    /// the index.
    pub command: Option<String>,
}

/// Which model `load` loads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelRef {
    /// The model shipped in `assets/default-model`.
    Default,
    /// A model directory or file, as typed (a leading `~` is not yet expanded).
    Path(PathBuf),
}

/// `load default|PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Load {
    pub model: ModelRef,
    pub head: HeadPrecision,
    pub packing: Packing,
}

impl Load {
    /// `load MODEL` with the output projection kept as the table's default says.
    pub fn new(model: ModelRef) -> Load {
        Load {
            model,
            head: HeadPrecision::DEFAULT,
            packing: Packing::DEFAULT,
        }
    }
}

/// `verify [PATH]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verify {
    /// The checkpoint to check; `None` for the loaded model.
    pub path: Option<PathBuf>,
}

/// `show TENSOR [--with PLUGIN] [--step N]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Show {
    pub tensor: String,
    /// The visualiser; `None` for the first enabled one.
    pub with: Option<String>,
    /// The open run's step to show the tensor at; `None` for the current state.
    pub step: Option<u64>,
}

/// `export OUT [--to FORMAT] [--embed-type TYPE]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    /// A directory for `hf`, a `.gguf` file for the GGUF formats.
    pub out: PathBuf,
    pub to: ExportFormat,
    /// Only for the GGUF formats (the parser refuses it with `hf`).
    pub embed_type: EmbedType,
}

/// `synth --shape SHAPE [--seed S] --out DIR`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Synth {
    pub shape: SynthShape,
    pub seed: u64,
    pub out: PathBuf,
}

/// `generate PROMPT [options]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Generate {
    pub prompt: String,
    pub max_tokens: u32,
    pub temperature: f32,
    pub top_k: Option<u32>,
    pub top_p: Option<f32>,
    pub seed: u64,
    pub tracer: Option<String>,
    pub stop: Option<String>,
    /// Always take the likeliest token; sampling options are then not allowed.
    pub greedy: bool,
}

impl Generate {
    /// Its generation options, as `chat` takes them too.
    pub fn options(&self) -> GenerationOptions {
        GenerationOptions {
            max_tokens: self.max_tokens,
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            seed: self.seed,
            tracer: self.tracer.clone(),
            stop: self.stop.clone(),
            greedy: self.greedy,
        }
    }
}

/// The options `generate` and `chat` share, with the same defaults (the table defines them once).
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationOptions {
    pub max_tokens: u32,
    pub temperature: f32,
    pub top_k: Option<u32>,
    pub top_p: Option<f32>,
    pub seed: u64,
    pub tracer: Option<String>,
    pub stop: Option<String>,
    /// Always take the likeliest token; sampling options are then not allowed.
    pub greedy: bool,
}

/// `chat [MESSAGE] [--system TEXT] [--reset] [--template FILE] [generation options]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Chat {
    /// What the user says. `None` only with `--reset` or `--system`, which then only start a
    /// new conversation.
    pub message: Option<String>,
    /// Starts a new conversation with this system message.
    pub system: Option<String>,
    /// Starts a new conversation.
    pub reset: bool,
    /// A Jinja chat template to use from now on instead of the model's.
    pub template: Option<PathBuf>,
    pub options: GenerationOptions,
}

/// What `logits` runs the model on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogitsInput {
    Prompt(String),
    /// Token ids, never empty.
    Ids(Vec<u32>),
}

/// `logits PROMPT | --ids N,N,... [--top N] [--out FILE]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logits {
    pub input: LogitsInput,
    /// How many of the highest logits to list.
    pub top: u32,
    /// Where to write every position's logits (`.safetensors` or `.json`).
    pub out: Option<PathBuf>,
}

/// `bench [--prompt N] [--tokens N] [--repeat R] [--seed S]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bench {
    /// Token ids prefilled in one forward pass.
    pub prompt: u32,
    /// Tokens decoded one at a time after the prefill.
    pub tokens: u32,
    /// Timed runs of prefill and decode.
    pub repeat: u32,
    /// Seed of the prompt's token ids.
    pub seed: u64,
}

/// The vocabulary of the tokenizer `train` trains when given no tokenizer option.
pub const DEFAULT_TOKENIZER_VOCAB: u32 = 2048;

/// Where `train` gets its tokenizer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenizerSource {
    /// Neither `--tokenizer` nor `--train-tokenizer`: a tokenizer of
    /// [`DEFAULT_TOKENIZER_VOCAB`] entries trained on the training text, so that a run does not
    /// depend on which model the session happens to have loaded.
    Default,
    /// A `tokenizer.json` file.
    File(PathBuf),
    /// One trained on the training data with this many entries.
    Train { vocab: u32 },
}

/// `train --data PATH … --out DIR`: a new run.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainStart {
    pub data: PathBuf,
    pub val: Option<PathBuf>,
    pub preset: Preset,
    pub tokenizer: TokenizerSource,
    pub steps: u64,
    pub seq: u32,
    pub batch: u32,
    pub lr: f32,
    /// Linear warm-up steps before the cosine decay.
    pub warmup: u64,
    pub seed: u64,
    pub twin: bool,
    pub quant: ScaleGranularity,
    pub checkpoint_every: u64,
    pub out: PathBuf,
    /// Changes to the preset's shape.
    pub shape: TrainShape,
    /// The share of the training text held out for validation when there is no `--val`.
    pub val_fraction: f32,
    /// The cosine schedule decays to `lr × min_lr_ratio`.
    pub min_lr_ratio: f32,
    pub weight_decay: f32,
    /// Clip the global gradient norm to this (0: off).
    pub clip: f32,
    /// Snap latent weights to trit × scale after every step.
    pub projection: bool,
    /// Keep only the newest this many checkpoints besides step 0 (0: all).
    pub keep_checkpoints: u64,
    /// Validate every this many steps (0: only at the end).
    pub eval_every: u64,
    /// Held-out sequences used by periodic validation.
    pub eval_sequences: u32,
    /// Where the run computes (`--device`; the first of `--devices`).
    pub device: tritlab_train::DeviceSpec,
    /// The devices of a data-parallel run, `device` first (`--devices`); empty: `device` alone.
    pub devices: Vec<tritlab_train::DeviceSpec>,
    /// Micro-batches a step (`--micro-batches`): the batch is split into this many, whose
    /// gradients are summed in order.
    pub micro_batches: u32,
    /// How a GPU multiplies matrices (`--matmul`).
    pub matmul: tritlab_train::Matmul,
    /// How its products are computed (`--kernels`).
    pub kernels: ProductKernels,
}

/// `train --layers N --hidden N --intermediate N --heads N --kv-heads N`: a preset, changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrainShape {
    pub layers: Option<u32>,
    pub hidden: Option<u32>,
    pub intermediate: Option<u32>,
    pub heads: Option<u32>,
    pub kv_heads: Option<u32>,
}

/// `train --resume DIR [--steps N]`: an interrupted or finished run, continued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrainResume {
    pub run: PathBuf,
    /// The step count the run should reach; `None` for the total it was started with.
    pub steps: Option<u64>,
    /// Other devices to continue on (`--devices`), rank 0 first; empty: the run's own.
    pub devices: Vec<tritlab_train::DeviceSpec>,
}

/// `train`, in either form.
// A command is parsed once per line and moved a few times: the start form's size costs nothing,
// and boxing it would only make every literal of it in tests and callers longer.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Train {
    Start(TrainStart),
    Resume(TrainResume),
}

/// `log …`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Log {
    /// `log [RUN_DIR]`: the run's steps; `None` for the open run.
    Steps { run: Option<PathBuf> },
    /// `log show STEP`.
    Show { step: u64 },
    /// `log plot SERIES`.
    Plot { series: PlotSeries },
}

/// `eval …`: measurements of the loaded model on data.
#[derive(Debug, Clone, PartialEq)]
pub enum Eval {
    /// `eval ppl --data FILE [--ctx N] [--stride N] [--compare default|PATH] [--compare-head P]
    /// [--windows N]`.
    Ppl(EvalPpl),
}

/// `eval ppl`: perplexity of the loaded model on a text file.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalPpl {
    pub data: PathBuf,
    /// Tokens per window.
    pub ctx: u32,
    /// Hugging Face's sliding windows, a window every `stride` tokens; `None`: llama-perplexity's
    /// non-overlapping windows, the second half of each scored.
    pub stride: Option<u32>,
    /// A model to compare the loaded one with on the same windows (KL divergence, top-1).
    pub compare: Option<ModelRef>,
    /// How the compared model keeps its output projection.
    pub compare_head: HeadPrecision,
    /// Evaluate at most this many windows.
    pub windows: Option<u32>,
}

/// `replay …`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replay {
    /// `replay open RUN_DIR`.
    Open { run: PathBuf },
    /// `replay verify [--from A] [--to B] [--device D]`; `None` ends mean the run's first or last
    /// step; without `--device`, on the run's own device when this build has it, else on the CPU.
    Verify {
        from: Option<u64>,
        to: Option<u64>,
        device: Option<tritlab_train::DeviceSpec>,
    },
    /// `replay export STEP DIR`.
    Export { step: u64, dir: PathBuf },
}

/// `seek STEP`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seek {
    pub step: u64,
}

/// `step [N]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub count: u64,
}

/// `back [N]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Back {
    pub count: u64,
}

/// `plugin …`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plugin {
    Load {
        path: PathBuf,
    },
    Enable {
        name: String,
    },
    Disable {
        name: String,
    },
    Set {
        name: String,
        key: String,
        value: String,
    },
}

/// `check PLUGIN [--on TARGET]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub plugin: String,
    /// `None`: every subject there is (the last trace, the weights, the current step).
    pub on: Option<CheckTarget>,
}
