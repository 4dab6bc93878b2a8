//! Model presets and training options, and `run.json`, the record of how a run was started.
//!
//! Everything that decides the numbers of a run lives in [`RunConfig`], written once when the
//! run starts: replay and resume read it back and refuse to go on if anything they would compute
//! with differs (data, tokenizer, thread count).

use crate::error::{Result, TrainError};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tritlab_engine::{BitNetConfig, QuantizationConfig};

/// `run.json`'s format version; readers reject others.
pub const RUN_FORMAT_VERSION: u32 = 1;

/// The architectures `tritlab train --preset` knows. All are BitNet b1.58 decoders (transformers'
/// `BitNetForCausalLM` layout), so a trained model loads with `tritlab generate` and `verify`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Preset {
    /// 2 layers, d_model 128, 4 query / 2 KV heads, SwiGLU: trains in seconds, for tests.
    Tiny,
    /// 8 layers, d_model 512, 8 query / 4 KV heads, SwiGLU (intermediate 1536), RMSNorm, RoPE.
    Small,
    /// microsoft/bitnet-b1.58-2B-4T's shape (30 layers, d_model 2560, ReLU²): far too large to
    /// train on a laptop, but the same code path.
    Bitnet2b4t,
}

impl Preset {
    pub const ALL: [Preset; 3] = [Preset::Tiny, Preset::Small, Preset::Bitnet2b4t];

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Preset::Tiny => "tiny",
            Preset::Small => "small",
            Preset::Bitnet2b4t => "bitnet-2b4t",
        }
    }

    /// The model config for a tokenizer of `vocab_size` ids.
    pub fn config(self, vocab_size: usize, max_positions: usize) -> BitNetConfig {
        let base = BitNetConfig::bitnet_2b4t();
        let (hidden, inter, layers, heads, kv, act) = match self {
            Preset::Tiny => (128, 384, 2, 4, 2, "silu"),
            Preset::Small => (512, 1536, 8, 8, 4, "silu"),
            Preset::Bitnet2b4t => (2560, 6912, 30, 20, 5, "relu2"),
        };
        BitNetConfig {
            vocab_size,
            hidden_size: hidden,
            intermediate_size: inter,
            num_hidden_layers: layers,
            num_attention_heads: heads,
            num_key_value_heads: Some(kv),
            hidden_act: act.into(),
            max_position_embeddings: max_positions.max(base.max_position_embeddings.min(2048)),
            rope_theta: Some(10_000.0),
            bos_token_id: None,
            eos_token_id: None,
            quantization_config: Some(QuantizationConfig {
                quant_method: Some("bitnet".into()),
                linear_class: Some("autobitlinear".into()),
                quantization_mode: Some("offline".into()),
                use_rms_norm: None,
                weight_group_size: None,
            }),
            ..base
        }
    }
}

/// How latent weights become trits in the forward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WeightQuant {
    /// One absmean scale per tensor (BitNet b1.58).
    Tensor,
    /// One absmean scale per 128 consecutive weights of a row.
    Group128,
}

impl WeightQuant {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "tensor" | "per-tensor" => Some(WeightQuant::Tensor),
            "group" | "group128" | "group-128" => Some(WeightQuant::Group128),
            _ => None,
        }
    }

    pub fn granularity(self) -> tritlab_kernels::ScaleGranularity {
        match self {
            WeightQuant::Tensor => tritlab_kernels::ScaleGranularity::PerTensor,
            WeightQuant::Group128 => {
                tritlab_kernels::ScaleGranularity::PerGroup { group_size: 128 }
            }
        }
    }
}

/// How the GPU multiplies matrices in the forward and backward passes. Anything but `f32`
/// changes the numerics, so it is part of the run's options (`run.json`), and resume and replay
/// compute the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Matmul {
    /// Full f32 products (the CPU's only choice).
    #[default]
    F32,
    /// f32 operands on TF32 tensor cores (10-bit mantissas in the products, f32 sums).
    Tf32,
    /// The linear layers' and the output head's products in bf16 (f32 accumulation inside
    /// cuBLAS, bf16 results), everything else in f32.
    Bf16,
}

impl Matmul {
    pub const NAMES: &'static [&'static str] = &["f32", "tf32", "bf16"];

    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "f32" => Some(Matmul::F32),
            "tf32" => Some(Matmul::Tf32),
            "bf16" => Some(Matmul::Bf16),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }

    pub fn is_f32(&self) -> bool {
        *self == Matmul::F32
    }
}

/// Which implementation computes the products of a QAT step. Both train the same model with
/// the same quantisers; they sum in different orders, so a run records the one it used
/// (`run.json`'s `options.kernels`) and resumes and replays on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Kernels {
    /// candle's f32 products on fake-quantised values, on every CPU and on GPUs. Runs from
    /// before the choice was recorded computed this way.
    #[default]
    F32,
    /// The ternary kernels: BitLinear forward as the engine's exact integer product, the
    /// backward products and the output head on AMX tiles ([`crate::ops::BitLinear`],
    /// [`crate::ops::HeadProduct`]). Needs a CPU with AMX (Intel Sapphire Rapids or later).
    Ternary,
}

impl Kernels {
    /// The names the command line accepts, as typed.
    pub const NAMES: [&'static str; 2] = ["f32", "ternary"];

    pub fn name(self) -> &'static str {
        match self {
            Kernels::F32 => "f32",
            Kernels::Ternary => "ternary",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "f32" => Some(Kernels::F32),
            "ternary" => Some(Kernels::Ternary),
            _ => None,
        }
    }

    /// The faster path this machine runs: ternary where the CPU has AMX (a `small` preset step
    /// measured 1.14–2.02× the f32 path's tokens/s there, see the README), f32 elsewhere.
    pub fn preferred() -> Self {
        if tritlab_kernels::amx::available() {
            Kernels::Ternary
        } else {
            Kernels::F32
        }
    }

    /// Whether this machine can compute on the path, and if not, why not.
    pub fn check_available(self) -> Result<()> {
        match self {
            Kernels::Ternary if !tritlab_kernels::amx::available() => Err(TrainError::Device(
                "the ternary product path needs a CPU with AMX tiles (Intel Sapphire Rapids \
                     or later) and a Linux kernel that grants them; this one has none. Train with \
                     --kernels f32; a run computed on the ternary path resumes and replays bit \
                     for bit only on a machine with AMX"
                    .into(),
            )),
            _ => Ok(()),
        }
    }
}

impl std::fmt::Display for Kernels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How a graph computes the element-wise chains of a layer: the RMS norms, the rotary
/// embeddings, the attention softmax and the feed-forward's gated unit. Both compute the same formulas and sum in different
/// orders, so a run records the one it used (`run.json`'s `options.graph`) and resumes and
/// replays on it. (A world kept on a GPU always computes with the fused operations.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Graph {
    /// candle's operations, a node of the autograd graph for each step of each formula. CPU runs
    /// from before the choice was recorded computed this way.
    #[default]
    Ops,
    /// Each chain as one operation forward and one backward ([`crate::fused`]): fewer passes
    /// over the activations and far fewer gradients for backprop to add up. New runs.
    Fused,
}

impl Graph {
    pub fn name(self) -> &'static str {
        match self {
            Graph::Ops => "ops",
            Graph::Fused => "fused",
        }
    }

    pub fn is_ops(&self) -> bool {
        *self == Graph::Ops
    }
}

impl std::fmt::Display for Graph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The most tokens one optimiser step may process (`batch × seq`): far beyond what trains on a
/// CPU, and small enough that the batch's buffers can never overflow.
pub const MAX_BATCH_TOKENS: usize = 1 << 24;

/// The most threads a run may record (replay and resume build a pool of that many).
pub const MAX_THREADS: usize = 4096;

/// Optimiser, schedule and bookkeeping settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainOptions {
    pub preset: Preset,
    pub steps: u64,
    pub seq_len: usize,
    pub batch_size: usize,
    /// Peak learning rate, reached after `warmup_steps` and decayed by a cosine to
    /// `lr · min_lr_ratio` at `steps`.
    pub learning_rate: f64,
    pub warmup_steps: u64,
    pub min_lr_ratio: f64,
    pub weight_decay: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub adam_eps: f64,
    /// Global gradient-norm clip (0 disables).
    pub grad_clip: f64,
    pub seed: u64,
    pub weight_quant: WeightQuant,
    /// After each optimiser step, snap latent weights to `trit · scale` (the projection recipe)
    /// instead of keeping them free (the straight-through recipe).
    pub projection: bool,
    /// Train a full-precision copy beside the ternary model, from the same initial weights, on
    /// the same batches in the same order.
    pub twin: bool,
    /// Write a latent checkpoint every this many steps.
    pub checkpoint_every: u64,
    /// Keep the newest this many checkpoints besides step 0 (0 keeps all).
    pub keep_checkpoints: usize,
    /// Validate every this many steps (0: only at the end).
    pub eval_every: u64,
    /// Sequences of the held-out set used by periodic validation (the final one uses all).
    pub eval_sequences: usize,
    /// The GPU's matrix products; runs without the field multiply in f32.
    #[serde(default, skip_serializing_if = "Matmul::is_f32")]
    pub matmul: Matmul,
    /// The products' implementation (runs from before it was recorded: f32).
    #[serde(default)]
    pub kernels: Kernels,
    /// How the layers' element-wise chains are computed (runs from before it was recorded:
    /// candle's operations).
    #[serde(default, skip_serializing_if = "Graph::is_ops")]
    pub graph: Graph,
    /// Gradient accumulation: each batch's sequences split into this many equal micro-batches,
    /// whose gradients are computed one after another (or on several devices at once, see
    /// [`crate::parallel`]) and summed in micro-batch order. Runs without the field: 1.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub micro_batches: usize,
}

fn one() -> usize {
    1
}

fn is_one(n: &usize) -> bool {
    *n == 1
}

impl TrainOptions {
    /// Sensible settings for `preset`, which callers then override.
    pub fn new(preset: Preset) -> Self {
        TrainOptions {
            preset,
            steps: 200,
            seq_len: 64,
            batch_size: 8,
            learning_rate: 3e-3,
            warmup_steps: 0,
            min_lr_ratio: 0.1,
            weight_decay: 0.1,
            beta1: 0.9,
            beta2: 0.95,
            adam_eps: 1e-8,
            grad_clip: 1.0,
            seed: 1069,
            weight_quant: WeightQuant::Tensor,
            projection: false,
            twin: false,
            checkpoint_every: 50,
            keep_checkpoints: 0,
            eval_every: 0,
            eval_sequences: 64,
            matmul: Matmul::F32,
            kernels: Kernels::F32,
            graph: Graph::Fused,
            micro_batches: 1,
        }
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(TrainError::Options(m));
        if self.steps == 0 {
            return bad("--steps must be at least 1".into());
        }
        if self.seq_len < 2 {
            return bad("--seq must be at least 2".into());
        }
        if self.batch_size == 0 {
            return bad("--batch must be at least 1".into());
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return bad(format!(
                "--lr {} must be a positive number",
                self.learning_rate
            ));
        }
        if !(0.0..=1.0).contains(&self.min_lr_ratio) {
            return bad(format!(
                "min-lr ratio {} must be in [0, 1]",
                self.min_lr_ratio
            ));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad(format!("weight decay {} must be ≥ 0", self.weight_decay));
        }
        if !(0.0..1.0).contains(&self.beta1) || !(0.0..1.0).contains(&self.beta2) {
            return bad("Adam betas must be in [0, 1)".into());
        }
        if !(self.grad_clip.is_finite() && self.grad_clip >= 0.0) {
            return bad(format!("gradient clip {} must be ≥ 0", self.grad_clip));
        }
        if !(self.adam_eps.is_finite() && self.adam_eps > 0.0) {
            return bad(format!(
                "Adam epsilon {} must be a positive number",
                self.adam_eps
            ));
        }
        if self.micro_batches == 0 || !self.batch_size.is_multiple_of(self.micro_batches) {
            return bad(format!(
                "--micro-batches {} must divide --batch {} (each micro-batch holds the same number of sequences)",
                self.micro_batches, self.batch_size
            ));
        }
        if self.checkpoint_every == 0 {
            return bad("--checkpoint-every must be at least 1".into());
        }
        if self.eval_sequences == 0 {
            return bad("--eval-sequences must be at least 1".into());
        }
        match self.batch_size.checked_mul(self.seq_len) {
            Some(n) if n <= MAX_BATCH_TOKENS => {}
            _ => {
                return bad(format!(
                    "--batch {} × --seq {} is more than {MAX_BATCH_TOKENS} tokens per step",
                    self.batch_size, self.seq_len
                ))
            }
        }
        Ok(())
    }

    /// The learning rate of `step` (1-based): linear warm-up, then cosine decay.
    pub fn learning_rate_at(&self, step: u64) -> f64 {
        let peak = self.learning_rate;
        if step <= self.warmup_steps && self.warmup_steps > 0 {
            return peak * step as f64 / self.warmup_steps as f64;
        }
        let span = self.steps.saturating_sub(self.warmup_steps).max(1) as f64;
        let progress = ((step - self.warmup_steps.min(step)) as f64 / span).clamp(0.0, 1.0);
        let floor = peak * self.min_lr_ratio;
        floor + 0.5 * (peak - floor) * (1.0 + libm::cos(std::f64::consts::PI * progress))
    }
}

/// Where the text came from and what it tokenised to, so replay can check it reads the same.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataRecord {
    /// The files read for training, in order.
    pub train_files: Vec<PathBuf>,
    /// Files of the validation set; empty when it is the held-out tail of the training text.
    pub val_files: Vec<PathBuf>,
    /// Fraction of the training text held out when `val_files` is empty.
    pub val_fraction: f64,
    /// blake3 of the training and validation token ids.
    pub train_tokens_hash: String,
    pub val_tokens_hash: String,
    pub train_tokens: usize,
    pub val_tokens: usize,
}

/// `run.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    pub format: String,
    pub version: u32,
    pub tritlab_version: String,
    pub model: BitNetConfig,
    pub options: TrainOptions,
    pub data: DataRecord,
    /// Rayon threads the run computed with: float sums depend on how work is split, so replay
    /// must use the same count to be bit-exact.
    pub threads: usize,
    /// The device the run computed on; runs from before devices were recorded are CPU runs.
    #[serde(default)]
    pub device: crate::device::DeviceRecord,
    /// Where the world lives and so how it is hashed and ternarised (`crate::scheme`); runs
    /// without the field (every CPU run, and GPU runs from before the world moved to the GPU)
    /// keep it on the host.
    #[serde(default, skip_serializing_if = "crate::scheme::WorldScheme::is_host")]
    pub world: crate::scheme::WorldScheme,
    /// The devices of a data-parallel run, rank 0 (`device`) first; empty for a run on one
    /// device. A record: the bits of a step do not depend on how many devices computed it
    /// ([`crate::parallel`]), so the run also resumes and replays on one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub data_parallel: Vec<crate::device::DeviceSpec>,
}

impl RunConfig {
    pub const FILE: &'static str = "run.json";
    pub const FORMAT: &'static str = "tritlab-run";

    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join(Self::FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| TrainError::io(&path, e))?;
        let value: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| TrainError::format(&path, format!("not valid JSON: {e}")))?;
        if value.get("format").and_then(|f| f.as_str()) != Some(Self::FORMAT) {
            return Err(TrainError::format(
                &path,
                "not a tritlab run description (\"format\" is not \"tritlab-run\")",
            ));
        }
        let version = value.get("version").and_then(|v| v.as_u64());
        if version != Some(RUN_FORMAT_VERSION as u64) {
            return Err(TrainError::format(
                &path,
                format!(
                    "run format version {} is not supported (this tritlab reads version {RUN_FORMAT_VERSION})",
                    version.map_or("missing".to_string(), |v| v.to_string())
                ),
            ));
        }
        let config: RunConfig =
            serde_json::from_value(value).map_err(|e| TrainError::format(&path, e.to_string()))?;
        config.validate(&path)?;
        Ok(config)
    }

    /// Checks every field of a `run.json` that was read back: the file may have been edited or
    /// damaged since the run wrote it, and its numbers size buffers and divide schedules.
    pub fn validate(&self, path: &Path) -> Result<()> {
        let bad = |m: String| Err(TrainError::format(path, m));
        self.options
            .validate()
            .or_else(|e| bad(format!("options: {e}")))?;
        self.model.validate(path)?;
        if self.options.seq_len > self.model.max_position_embeddings {
            return bad(format!(
                "options.seq_len {} is more than model.max_position_embeddings {}",
                self.options.seq_len, self.model.max_position_embeddings
            ));
        }
        if self.threads == 0 || self.threads > MAX_THREADS {
            return bad(format!(
                "threads {} must be between 1 and {MAX_THREADS}",
                self.threads
            ));
        }
        let d = &self.data;
        if d.train_files.is_empty() {
            return bad("data.train_files is empty: the run names no training text".into());
        }
        if !(d.val_fraction.is_finite() && (0.0..1.0).contains(&d.val_fraction)) {
            return bad(format!(
                "data.val_fraction {} must be in [0, 1)",
                d.val_fraction
            ));
        }
        for (key, hash) in [
            ("data.train_tokens_hash", &d.train_tokens_hash),
            ("data.val_tokens_hash", &d.val_tokens_hash),
        ] {
            if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                return bad(format!("{key} {hash:?} is not a blake3 hex digest"));
            }
        }
        if d.train_tokens <= self.options.seq_len {
            return bad(format!(
                "data.train_tokens {} is not enough for one sequence of options.seq_len {}",
                d.train_tokens, self.options.seq_len
            ));
        }
        if !self.options.matmul.is_f32() && self.device.device.is_cpu() {
            return bad(format!(
                "options.matmul {} is a GPU setting, and this run's device is the CPU",
                self.options.matmul.name()
            ));
        }
        if self.world == crate::scheme::WorldScheme::Device && self.device.device.is_cpu() {
            return bad(
                "world \"device\" is the scheme of GPU runs, and this run's device is the CPU"
                    .into(),
            );
        }
        Ok(())
    }

    pub fn write(&self, dir: &Path) -> Result<()> {
        let path = dir.join(Self::FILE);
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| TrainError::format(&path, e.to_string()))?;
        crate::error::write_atomic(&path, (text + "\n").as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_warms_up_then_decays_to_the_floor() {
        let mut o = TrainOptions::new(Preset::Tiny);
        o.steps = 100;
        o.warmup_steps = 10;
        o.learning_rate = 1.0;
        o.min_lr_ratio = 0.1;
        assert!((o.learning_rate_at(1) - 0.1).abs() < 1e-12);
        assert!((o.learning_rate_at(10) - 1.0).abs() < 1e-12);
        assert!((o.learning_rate_at(55) - 0.55).abs() < 1e-12);
        assert!((o.learning_rate_at(100) - 0.1).abs() < 1e-12);
        let mut last = f64::INFINITY;
        for s in 10..=100 {
            let lr = o.learning_rate_at(s);
            assert!(lr <= last);
            last = lr;
        }
    }

    #[test]
    fn presets_are_valid_bitnet_configs() {
        for p in Preset::ALL {
            let c = p.config(1000, 256);
            c.validate(Path::new("config.json")).unwrap();
        }
        let small = Preset::Small.config(50257, 128);
        assert_eq!(
            (
                small.num_hidden_layers,
                small.hidden_size,
                small.num_attention_heads
            ),
            (8, 512, 8)
        );
        assert_eq!(small.num_key_value_heads, Some(4));
        assert_eq!(small.hidden_act, "silu");
    }
}
