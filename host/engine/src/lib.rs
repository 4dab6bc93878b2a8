//! tritlab's engine: BitNet b1.58 language models on the ternary kernels.
//!
//! * [`Model::load`] reads a Hugging Face checkpoint directory (`config.json`, memory-mapped
//!   `*.safetensors`, sharded or not) — offline packed trits or online latent weights — and
//!   converts every linear layer once into the kernels' layout.
//! * [`Model::forward`] runs the decoder with a [`KvCache`]: int8 per-token activations times
//!   ternary weights, everything else in f32.
//! * [`Model::forward_batch`] runs several sequences, each with its own cache, through one
//!   product per layer (continuous batching); [`Sequence`] is one sequence's token choice.
//! * [`generate()`] / [`Generator`] sample tokens ([`Sampler`]: greedy, temperature, top-k, top-p,
//!   seeded ChaCha20) and report every [`GenerationStep`] to a callback.
//! * [`Conversation`] / [`chat_turn`] hold multi-turn chats: the model's chat template
//!   ([`ChatTemplate`], rendered with minijinja as transformers renders it), stops at every
//!   end-of-turn id, and KV-cache reuse of the prefix the turns share.
//! * A `.gguf` file loads wherever a checkpoint directory does ([`bitnet::gguf_load`]), and
//!   [`Model::export_gguf`] / [`Model::export_hf`] write models back out.
//! * [`layout`] names every tensor of the model once: its transformers and GGUF names, its shape
//!   and whether it is ternary; everything that reads or writes checkpoints goes through it.
//! * [`OutputHead`] chooses how the output projection is kept: as stored, or converted at load
//!   into the kernels' bf16, int8, 6- or 4-bit head formats ([`Model::set_output_head`]).
//! * [`Packing`] chooses how the ternary layers are kept: I2 (2 bits per trit) or T1 (1.6 bits
//!   per trit, fewer bytes per token), with the same products bit for bit ([`Model::set_packing`]).
//! * [`verify()`] says whether a checkpoint's weights are really ternary; [`synth()`] writes random
//!   checkpoints with real shapes.

pub mod bitnet;
pub mod chat;
pub mod config;
pub mod error;
pub mod eval;
pub mod generate;
pub mod head;
pub mod layout;
pub mod logits_file;
pub mod ops;
pub mod sampling;
pub mod stats;
pub mod synth;
pub mod tokenizer;
pub mod verify;
pub mod weights;

pub use bitnet::export::{chat_template_for, ExportReport, ExportedTensor};
pub use bitnet::{BatchItem, BitLinear, DecoderLayer, KvCache, Logits, Model, WeightFormat};
pub use chat::{
    chat_turn, turn_end_ids, ChatMessage, ChatTemplate, ChatTurn, Conversation, PendingTurn, Role,
};
pub use config::{Activation, BitNetConfig, LinearClass, QuantizationConfig, QuantizationMode};
pub use error::{EngineError, Result};
pub use eval::{Comparison, Perplexity, Window, Windows};
pub use generate::{
    generate, generate_ids, GenerateOptions, Generation, GenerationStep, Generator, Sequence,
    StepControl, StopReason,
};
pub use head::{HeadPrecision, OutputHead, UnknownOutputHead};
pub use logits_file::{write_logits, LogitsFormat};
pub use sampling::{LogitStats, Sampler, SamplingOptions, TopToken};
pub use stats::{LayerTritStats, StepTritStats, TensorTritStats, TritSummary};
pub use synth::{synth, SynthReport, SynthShape};
pub use tokenizer::{TokenStream, Tokenizer};
pub use tritlab_gguf::GgmlType;
pub use tritlab_kernels::Packing;
pub use verify::{verify, Verdict, VerifyReport};
