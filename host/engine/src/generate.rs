//! Autoregressive generation with a KV cache: prefill the prompt in one pass (the kernels' GEMM
//! path), then decode one token at a time (their GEMV path), reporting each step to a callback.

use crate::bitnet::{KvCache, Logits, Model};
use crate::error::{EngineError, Result};
use crate::sampling::{LogitStats, Sampler, SamplingOptions};
use crate::stats::StepTritStats;
use crate::tokenizer::{TokenStream, Tokenizer};
use serde::Serialize;
use std::time::Instant;

#[derive(Debug, Clone, Serialize)]
pub struct GenerateOptions {
    /// Tokens to generate at most (stop tokens not counted).
    pub max_tokens: usize,
    pub sampling: SamplingOptions,
    /// Extra ids that end generation.
    pub stop_tokens: Vec<u32>,
    /// Also stop at the model's eos ids (config.json / generation_config.json).
    pub stop_at_eos: bool,
    /// Let the tokenizer add its special tokens (e.g. BOS) to the prompt.
    pub add_special_tokens: bool,
    /// How many of the most likely tokens each step reports.
    pub top_logits: usize,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        Self {
            max_tokens: 128,
            sampling: SamplingOptions::default(),
            stop_tokens: Vec::new(),
            stop_at_eos: true,
            add_special_tokens: true,
            top_logits: 5,
        }
    }
}

/// What the callback sees for every generated token.
#[derive(Debug, Clone, Serialize)]
pub struct GenerationStep {
    /// 0 for the first generated token.
    pub index: usize,
    /// Position of the token in the whole sequence (prompt included).
    pub position: usize,
    pub token_id: u32,
    /// The text this token completes (empty while a multi-byte character is unfinished).
    pub text: String,
    /// Statistics of the logits the token was chosen from.
    pub logit_stats: LogitStats,
    /// Activation trit statistics of the forward pass that produced those logits
    /// (see [`StepTritStats`]).
    pub trit_stats: StepTritStats,
}

/// The callback's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepControl {
    Continue,
    Stop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "reason", content = "token")]
pub enum StopReason {
    MaxTokens,
    StopToken(u32),
    Callback,
    ContextFull,
}

/// A finished generation.
#[derive(Debug, Clone, Serialize)]
pub struct Generation {
    pub prompt_tokens: Vec<u32>,
    pub tokens: Vec<u32>,
    pub text: String,
    pub stop_reason: StopReason,
    pub prefill_seconds: f64,
    pub decode_seconds: f64,
}

/// Step-by-step generation state, for front ends that drive decoding themselves.
pub struct Generator<'m> {
    model: &'m Model,
    tokenizer: Option<&'m Tokenizer>,
    options: GenerateOptions,
    sampler: Sampler,
    cache: KvCache,
    stream: TokenStream,
    stops: Vec<u32>,
    /// Logits (and their step statistics) waiting to be sampled from.
    pending: Option<(Vec<f32>, StepTritStats)>,
    generated: Vec<u32>,
}

impl<'m> Generator<'m> {
    pub fn new(
        model: &'m Model,
        tokenizer: Option<&'m Tokenizer>,
        options: GenerateOptions,
    ) -> Result<Self> {
        Self::with_cache(model, tokenizer, options, model.new_cache())
    }

    /// A generator that continues from `cache`: the prompt given to [`Generator::prefill`]
    /// follows the positions already in it (a conversation's earlier turns).
    pub fn with_cache(
        model: &'m Model,
        tokenizer: Option<&'m Tokenizer>,
        options: GenerateOptions,
        cache: KvCache,
    ) -> Result<Self> {
        let sampler = Sampler::new(options.sampling.clone())?;
        let mut stops = options.stop_tokens.clone();
        if options.stop_at_eos {
            stops.extend_from_slice(model.eos_token_ids());
        }
        Ok(Self {
            model,
            tokenizer,
            sampler,
            cache,
            stream: TokenStream::new(),
            stops,
            pending: None,
            generated: Vec::new(),
            options,
        })
    }

    /// Runs the prompt through the model in one pass.
    pub fn prefill(&mut self, prompt: &[u32]) -> Result<()> {
        let mut trits = StepTritStats::default();
        let logits =
            self.model
                .forward_with(prompt, &mut self.cache, Logits::Last, Some(&mut trits))?;
        self.pending = Some((logits, trits));
        Ok(())
    }

    /// Samples the next token from the pending logits. Returns the step, or the reason to stop.
    /// The token is fed to the model (for the step after) only when it does not end generation.
    pub fn step(&mut self) -> Result<std::result::Result<GenerationStep, StopReason>> {
        if self.generated.len() >= self.options.max_tokens {
            return Ok(Err(StopReason::MaxTokens));
        }
        let (logits, trit_stats) = self.pending.take().ok_or_else(|| {
            EngineError::Invalid("generation needs a prompt first (prefill)".into())
        })?;
        let token = self.sampler.sample(&logits)?;
        if self.stops.contains(&token) {
            return Ok(Err(StopReason::StopToken(token)));
        }
        let position = self.cache.len();
        let text = match self.tokenizer {
            Some(t) => self.stream.push(t, token)?,
            None => String::new(),
        };
        let step = GenerationStep {
            index: self.generated.len(),
            position,
            token_id: token,
            text,
            logit_stats: LogitStats::compute(&logits, self.options.top_logits),
            trit_stats,
        };
        self.generated.push(token);
        let more = self.generated.len() < self.options.max_tokens;
        if more {
            if self.cache.len() + 1 > self.model.config().max_position_embeddings {
                return Ok(Ok(step));
            }
            let mut trits = StepTritStats::default();
            let logits = self.model.forward_with(
                &[token],
                &mut self.cache,
                Logits::Last,
                Some(&mut trits),
            )?;
            self.pending = Some((logits, trits));
        }
        Ok(Ok(step))
    }

    /// True when the context has no room for another token.
    pub fn context_full(&self) -> bool {
        self.pending.is_none() && self.generated.len() < self.options.max_tokens
    }

    /// Text still held back by the detokeniser.
    pub fn flush_text(&mut self) -> Result<String> {
        match self.tokenizer {
            Some(t) => self.stream.flush(t),
            None => Ok(String::new()),
        }
    }

    pub fn generated(&self) -> &[u32] {
        &self.generated
    }

    pub fn cache(&self) -> &KvCache {
        &self.cache
    }

    /// The cache, for the next turn of a conversation.
    pub fn into_cache(self) -> KvCache {
        self.cache
    }

    /// The logits the next token will be sampled from, if any are pending.
    pub fn pending_logits(&self) -> Option<&[f32]> {
        self.pending.as_ref().map(|(logits, _)| logits.as_slice())
    }
}

/// Samples until a stop: the text generated (with what the detokeniser held back) and why it
/// stopped. Shared by [`generate_ids`] and chat turns.
pub(crate) fn decode_loop(
    g: &mut Generator<'_>,
    mut callback: impl FnMut(&GenerationStep) -> StepControl,
) -> Result<(String, StopReason)> {
    let mut text = String::new();
    let stop_reason = loop {
        if g.context_full() {
            break StopReason::ContextFull;
        }
        match g.step()? {
            Err(reason) => break reason,
            Ok(step) => {
                text.push_str(&step.text);
                if callback(&step) == StepControl::Stop {
                    break StopReason::Callback;
                }
            }
        }
    };
    text.push_str(&g.flush_text()?);
    Ok((text, stop_reason))
}

/// Generates from token ids. The callback receives every step and may stop generation.
pub fn generate_ids(
    model: &Model,
    tokenizer: Option<&Tokenizer>,
    prompt: &[u32],
    options: &GenerateOptions,
    callback: impl FnMut(&GenerationStep) -> StepControl,
) -> Result<Generation> {
    let mut g = Generator::new(model, tokenizer, options.clone())?;
    let t0 = Instant::now();
    g.prefill(prompt)?;
    let prefill_seconds = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let (text, stop_reason) = decode_loop(&mut g, callback)?;
    Ok(Generation {
        prompt_tokens: prompt.to_vec(),
        tokens: g.generated,
        text,
        stop_reason,
        prefill_seconds,
        decode_seconds: t1.elapsed().as_secs_f64(),
    })
}

/// Tokenises `prompt` and generates; see [`generate_ids`].
pub fn generate(
    model: &Model,
    tokenizer: &Tokenizer,
    prompt: &str,
    options: &GenerateOptions,
    callback: impl FnMut(&GenerationStep) -> StepControl,
) -> Result<Generation> {
    let ids = tokenizer.encode(prompt, options.add_special_tokens)?;
    if ids.is_empty() {
        return Err(EngineError::Invalid(
            "the prompt encodes to no tokens".into(),
        ));
    }
    generate_ids(model, Some(tokenizer), &ids, options, callback)
}
