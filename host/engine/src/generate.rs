//! Autoregressive generation with a KV cache: prefill the prompt in one pass (the kernels' GEMM
//! path), then decode one token at a time (their GEMV path), reporting each step to a callback.
//!
//! What turns one sequence's logits into tokens — sampler, stop ids and strings, streaming
//! detokenisation, the token budget — is a [`Sequence`]. [`Generator`] drives one with its own
//! forward passes; a server's scheduler drives many with [`Model::forward_batch`], so the two
//! choose tokens with the same code.

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
    /// Texts that end generation as soon as the output contains one; the output ends before it.
    pub stop_strings: Vec<String>,
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
            stop_strings: Vec::new(),
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
    /// The text this token completes (empty while a multi-byte character is unfinished, or
    /// while it may be the start of a stop string).
    pub text: String,
    /// Natural log of the token's probability under the unscaled softmax of the logits.
    pub logprob: f32,
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
    /// The output reached one of the stop strings.
    StopString,
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

/// Holds back text that may be the start of a stop string, and ends the output before the first
/// stop string it contains.
#[derive(Debug, Clone, Default)]
struct StopText {
    stops: Vec<String>,
    held: String,
}

impl StopText {
    fn new(stops: &[String]) -> Self {
        Self {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            held: String::new(),
        }
    }

    /// Adds `piece`; returns the text that can be shown and whether a stop string was reached
    /// (the text is then what precedes it, and the rest is dropped).
    fn push(&mut self, piece: &str) -> (String, bool) {
        if self.stops.is_empty() {
            return (piece.to_string(), false);
        }
        self.held.push_str(piece);
        let first = self
            .stops
            .iter()
            .filter_map(|s| self.held.find(s.as_str()))
            .min();
        if let Some(at) = first {
            let out = self.held[..at].to_string();
            self.held.clear();
            return (out, true);
        }
        // Keep the longest tail that a stop string could still begin with.
        let keep = self
            .stops
            .iter()
            .map(|s| overlap(&self.held, s))
            .max()
            .unwrap_or(0);
        let out: String = self.held.drain(..self.held.len() - keep).collect();
        (out, false)
    }

    fn flush(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}

/// The length of the longest proper prefix of `stop` that `text` ends with.
fn overlap(text: &str, stop: &str) -> usize {
    (1..stop.len().min(text.len() + 1))
        .rev()
        .find(|&k| stop.is_char_boundary(k) && text.ends_with(&stop[..k]))
        .unwrap_or(0)
}

/// One sequence's choice of tokens, apart from the model and its cache: the seeded sampler,
/// the ids and strings that stop it, streaming detokenisation and the token budget. Given the
/// logits of each step it picks the next token and says whether the sequence goes on.
#[derive(Debug, Clone)]
pub struct Sequence {
    sampler: Sampler,
    stream: TokenStream,
    stops: Vec<u32>,
    stop_text: StopText,
    max_tokens: usize,
    top_logits: usize,
    generated: Vec<u32>,
    /// Why it ended, when a stop id or string ended it.
    stopped: Option<StopReason>,
}

impl Sequence {
    /// A sequence with `options`; the model's eos ids stop it when `options.stop_at_eos`.
    pub fn new(model: &Model, options: &GenerateOptions) -> Result<Self> {
        let sampler = Sampler::new(options.sampling.clone())?;
        let mut stops = options.stop_tokens.clone();
        if options.stop_at_eos {
            stops.extend_from_slice(model.eos_token_ids());
        }
        Ok(Self {
            sampler,
            stream: TokenStream::new(),
            stops,
            stop_text: StopText::new(&options.stop_strings),
            max_tokens: options.max_tokens,
            top_logits: options.top_logits,
            generated: Vec::new(),
            stopped: None,
        })
    }

    /// Why the sequence is over, or `None` while it wants another token.
    pub fn finished(&self) -> Option<StopReason> {
        self.stopped
            .or_else(|| (self.generated.len() >= self.max_tokens).then_some(StopReason::MaxTokens))
    }

    /// Picks the next token from `logits` (the step's activation trits and the token's
    /// position come along for the step's record). Returns the step, or the reason to stop when
    /// the sequence was already over or the token is a stop id (which is not recorded). After a
    /// step, [`finished`](Self::finished) says whether the token is to be fed to the model.
    pub fn next(
        &mut self,
        logits: &[f32],
        trit_stats: StepTritStats,
        position: usize,
        tokenizer: Option<&Tokenizer>,
    ) -> Result<std::result::Result<GenerationStep, StopReason>> {
        if let Some(reason) = self.finished() {
            return Ok(Err(reason));
        }
        let token = self.sampler.sample(logits)?;
        if self.stops.contains(&token) {
            self.stopped = Some(StopReason::StopToken(token));
            return Ok(Err(StopReason::StopToken(token)));
        }
        let piece = match tokenizer {
            Some(t) => self.stream.push(t, token)?,
            None => String::new(),
        };
        let (text, hit) = self.stop_text.push(&piece);
        if hit {
            self.stopped = Some(StopReason::StopString);
        }
        let logit_stats = LogitStats::compute(logits, self.top_logits);
        let logprob = (logits[token as usize] as f64 - logit_stats.log_sum_exp) as f32;
        let step = GenerationStep {
            index: self.generated.len(),
            position,
            token_id: token,
            text,
            logprob,
            logit_stats,
            trit_stats,
        };
        self.generated.push(token);
        Ok(Ok(step))
    }

    /// Text still held back by the detokeniser or as a possible start of a stop string (none
    /// once a stop string was reached).
    pub fn flush_text(&mut self, tokenizer: Option<&Tokenizer>) -> Result<String> {
        if self.stopped == Some(StopReason::StopString) {
            return Ok(String::new());
        }
        let rest = match tokenizer {
            Some(t) => self.stream.flush(t)?,
            None => String::new(),
        };
        let (mut text, hit) = self.stop_text.push(&rest);
        if hit {
            self.stopped = Some(StopReason::StopString);
        } else {
            text.push_str(&self.stop_text.flush());
        }
        Ok(text)
    }

    /// The ids generated so far (stop ids excluded).
    pub fn generated(&self) -> &[u32] {
        &self.generated
    }
}

/// Step-by-step generation state, for front ends that drive decoding themselves.
pub struct Generator<'m> {
    model: &'m Model,
    tokenizer: Option<&'m Tokenizer>,
    sequence: Sequence,
    cache: KvCache,
    /// Logits (and their step statistics) waiting to be sampled from.
    pending: Option<(Vec<f32>, StepTritStats)>,
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
        Ok(Self {
            model,
            tokenizer,
            sequence: Sequence::new(model, &options)?,
            cache,
            pending: None,
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
        if let Some(reason) = self.sequence.finished() {
            return Ok(Err(reason));
        }
        let (logits, trit_stats) = self.pending.take().ok_or_else(|| {
            EngineError::Invalid("generation needs a prompt first (prefill)".into())
        })?;
        let position = self.cache.len();
        let step = match self
            .sequence
            .next(&logits, trit_stats, position, self.tokenizer)?
        {
            Ok(step) => step,
            Err(reason) => return Ok(Err(reason)),
        };
        if self.sequence.finished().is_none() {
            if self.cache.len() + 1 > self.model.config().max_position_embeddings {
                return Ok(Ok(step));
            }
            let mut trits = StepTritStats::default();
            let logits = self.model.forward_with(
                &[step.token_id],
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
        self.pending.is_none() && self.sequence.finished().is_none()
    }

    /// Text still held back by the detokeniser.
    pub fn flush_text(&mut self) -> Result<String> {
        self.sequence.flush_text(self.tokenizer)
    }

    pub fn generated(&self) -> &[u32] {
        self.sequence.generated()
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
        tokens: g.generated().to_vec(),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&str]) -> (String, bool) {
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        let mut st = StopText::new(&stops);
        let mut out = String::new();
        for p in pieces {
            let (text, hit) = st.push(p);
            out.push_str(&text);
            if hit {
                return (out, true);
            }
        }
        out.push_str(&st.flush());
        (out, false)
    }

    #[test]
    fn stop_strings_end_the_text_before_them_across_pieces() {
        assert_eq!(run(&[], &["a", "b"]), ("ab".into(), false));
        assert_eq!(run(&["\n\n"], &["one\n", "\ntwo"]), ("one".into(), true));
        assert_eq!(run(&["END"], &["xE", "N", "y"]), ("xENy".into(), false));
        assert_eq!(run(&["END", "N"], &["xE", "N", "y"]), ("xE".into(), true));
        assert_eq!(run(&["é!"], &["café", "!"]), ("caf".into(), true));
        // Held text comes out when the stop string does not follow.
        assert_eq!(run(&["éa"], &["café"]), ("café".into(), false));
    }

    #[test]
    fn overlap_respects_char_boundaries() {
        assert_eq!(overlap("abc", "cde"), 1);
        assert_eq!(overlap("xab", "abc"), 2);
        assert_eq!(overlap("x\u{e9}", "\u{e9}y"), 2);
        assert_eq!(overlap("", "abc"), 0);
    }
}
