//! Perplexity of a model on a text, and how far a second model's predictions are from it.
//!
//! Two window conventions, because people compare against both:
//!
//! * [`Windows::LlamaCpp`] is `llama-perplexity`'s: the token stream is cut into non-overlapping
//!   windows of `ctx` tokens (a partial last window is dropped), the first token of each window
//!   is replaced by BOS when the tokenizer adds one, and only the second half of each window is
//!   scored: the predictions from positions `ctx/2 .. ctx-1` of the next token. Every scored
//!   prediction therefore sees at least `ctx/2` tokens of context.
//! * [`Windows::Sliding`] is the recipe in Hugging Face's "Perplexity of fixed-length models":
//!   windows of at most `ctx` tokens start every `stride` tokens, and each window scores only
//!   the tokens the previous window did not reach, so (for `stride < ctx`) every token but the
//!   first is predicted exactly once, with between `ctx - stride` and `ctx - 1` tokens of
//!   context. With `stride = ctx` the windows do not overlap and, as in the guide, the first
//!   token of each window is not predicted (nothing precedes it in its window). (The guide's
//!   code weights each window's mean loss by one token less than it scored; here every token's
//!   negative log-likelihood is summed, which is what the guide intends.)
//!
//! Perplexity is `exp(mean NLL)` over the scored predictions; its standard error follows from
//! the NLLs' standard deviation as llama-perplexity computes it (`ppl · sd / √(n−1)`).
//! [`compare`] runs a second model on the same windows: the mean Kullback–Leibler divergence of
//! its next-token distribution from the reference's, and how often their most likely tokens
//! agree — how quantisations are judged.

use crate::bitnet::{Logits, Model};
use crate::error::{EngineError, Result};
use std::ops::{ControlFlow, Range};

/// How the token stream is cut into windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Windows {
    /// Non-overlapping windows of `ctx` tokens, the second half scored (llama-perplexity).
    LlamaCpp { ctx: usize },
    /// Windows of `ctx` tokens every `stride` tokens (Hugging Face's sliding window).
    Sliding { ctx: usize, stride: usize },
}

/// One forward pass: the tokens it reads and the positions whose predictions count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// The tokens of the stream it reads.
    pub tokens: Range<usize>,
    /// Positions within the window whose logits are scored against the next token.
    pub scored: Range<usize>,
    /// Replace the window's first token by this id (llama-perplexity's BOS).
    pub first: Option<u32>,
}

impl Windows {
    /// The windows over a stream of `n` tokens. `bos` is the id the tokenizer starts a text
    /// with, if it adds one (used by [`Windows::LlamaCpp`] only).
    pub fn plan(self, n: usize, bos: Option<u32>) -> Result<Vec<Window>> {
        match self {
            Windows::LlamaCpp { ctx } => {
                if ctx < 4 {
                    return Err(EngineError::Invalid(format!(
                        "a context of {ctx} tokens is too short: at least 4"
                    )));
                }
                if n < ctx {
                    return Err(EngineError::Invalid(format!(
                        "the text has {n} tokens, fewer than one window of {ctx}"
                    )));
                }
                Ok((0..n / ctx)
                    .map(|i| Window {
                        tokens: i * ctx..(i + 1) * ctx,
                        scored: ctx / 2..ctx - 1,
                        first: bos,
                    })
                    .collect())
            }
            Windows::Sliding { ctx, stride } => {
                if ctx < 2 || stride == 0 || stride > ctx {
                    return Err(EngineError::Invalid(format!(
                        "sliding windows need ctx ≥ 2 and 1 ≤ stride ≤ ctx (got ctx {ctx}, stride {stride})"
                    )));
                }
                if n < 2 {
                    return Err(EngineError::Invalid(format!(
                        "the text has {n} tokens: nothing to predict"
                    )));
                }
                let mut out = Vec::new();
                let mut prev_end = 0;
                let mut begin = 0;
                while begin < n {
                    let end = (begin + ctx).min(n);
                    let len = end - begin;
                    let targets = end - prev_end;
                    // Targets are window positions len-targets..len (never position 0, which
                    // has nothing before it); the logits that predict them are one earlier.
                    let first_target = (len - targets).max(1);
                    out.push(Window {
                        tokens: begin..end,
                        scored: first_target - 1..len - 1,
                        first: None,
                    });
                    prev_end = end;
                    if end == n {
                        break;
                    }
                    begin += stride;
                }
                Ok(out)
            }
        }
    }
}

/// Perplexity over the scored predictions.
#[derive(Debug, Clone, PartialEq)]
pub struct Perplexity {
    pub windows: usize,
    /// Predictions scored.
    pub tokens: usize,
    /// Mean negative log-likelihood (nats per token).
    pub mean_nll: f64,
    pub perplexity: f64,
    /// Standard error of the perplexity.
    pub std_error: f64,
}

/// A second model's predictions against the reference's on the same windows.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// The second model's own perplexity.
    pub other: Perplexity,
    /// Mean KL(reference ‖ other) per prediction, nats.
    pub mean_kl: f64,
    /// Standard error of the mean KL divergence.
    pub kl_std_error: f64,
    /// Largest KL divergence of a single prediction.
    pub max_kl: f64,
    /// Share of predictions whose most likely token is the same in both.
    pub top1_agreement: f64,
}

/// Running sums of the NLLs.
#[derive(Default)]
struct Moments {
    n: usize,
    sum: f64,
    sum_sq: f64,
    max: f64,
}

impl Moments {
    fn push(&mut self, v: f64) {
        self.n += 1;
        self.sum += v;
        self.sum_sq += v * v;
        self.max = self.max.max(v);
    }
    fn mean(&self) -> f64 {
        self.sum / self.n.max(1) as f64
    }
    /// Standard error of the mean.
    fn std_error(&self) -> f64 {
        if self.n < 2 {
            return 0.0;
        }
        let mean = self.mean();
        let var = (self.sum_sq / self.n as f64 - mean * mean).max(0.0);
        (var / (self.n - 1) as f64).sqrt()
    }
    fn perplexity(&self, windows: usize) -> Perplexity {
        let ppl = self.mean().exp();
        Perplexity {
            windows,
            tokens: self.n,
            mean_nll: self.mean(),
            perplexity: ppl,
            std_error: ppl * self.std_error(),
        }
    }
}

/// Log-softmax of one row of logits, in f64.
fn log_softmax(logits: &[f32], out: &mut Vec<f64>) {
    let max = logits.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
    let lse = logits
        .iter()
        .map(|&v| (v as f64 - max).exp())
        .sum::<f64>()
        .ln()
        + max;
    out.clear();
    out.extend(logits.iter().map(|&v| v as f64 - lse));
}

fn argmax(v: &[f32]) -> usize {
    v.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &x)| {
            if x > bv {
                (i, x)
            } else {
                (bi, bv)
            }
        })
        .0
}

/// The logits of every position of one window.
fn window_logits(model: &Model, ids: &[u32], w: &Window) -> Result<Vec<f32>> {
    let mut tokens = ids[w.tokens.clone()].to_vec();
    if let Some(first) = w.first {
        tokens[0] = first;
    }
    model.forward_with(&tokens, &mut model.new_cache(), Logits::All, None)
}

fn check_ids(model: &Model, ids: &[u32]) -> Result<()> {
    let vocab = model.vocab_size();
    match ids.iter().find(|&&t| t as usize >= vocab) {
        Some(bad) => Err(EngineError::Invalid(format!(
            "token id {bad} is outside the model's vocabulary ({vocab})"
        ))),
        None => Ok(()),
    }
}

/// Perplexity of `model` on `ids` over `windows` (from [`Windows::plan`]). `progress(done,
/// total)` is called after every window; returning [`ControlFlow::Break`] stops early with the
/// windows done so far (an error if none was).
pub fn perplexity(
    model: &Model,
    ids: &[u32],
    windows: &[Window],
    mut progress: impl FnMut(usize, usize) -> ControlFlow<()>,
) -> Result<Perplexity> {
    check_ids(model, ids)?;
    let vocab = model.vocab_size();
    let mut nll = Moments::default();
    let mut lp = Vec::new();
    let mut done = 0;
    for w in windows {
        let logits = window_logits(model, ids, w)?;
        for p in w.scored.clone() {
            log_softmax(&logits[p * vocab..(p + 1) * vocab], &mut lp);
            nll.push(-lp[ids[w.tokens.start + p + 1] as usize]);
        }
        done += 1;
        if progress(done, windows.len()).is_break() {
            break;
        }
    }
    if done == 0 {
        return Err(EngineError::Invalid("no window was evaluated".into()));
    }
    Ok(nll.perplexity(done))
}

/// [`perplexity`] of `reference` and of `other` on the same windows, plus how far `other`'s
/// next-token distributions are from `reference`'s.
pub fn compare(
    reference: &Model,
    other: &Model,
    ids: &[u32],
    windows: &[Window],
    mut progress: impl FnMut(usize, usize) -> ControlFlow<()>,
) -> Result<(Perplexity, Comparison)> {
    check_ids(reference, ids)?;
    check_ids(other, ids)?;
    let vocab = reference.vocab_size();
    if other.vocab_size() != vocab {
        return Err(EngineError::Invalid(format!(
            "the models' vocabularies differ ({vocab} and {} tokens): their predictions cannot be compared",
            other.vocab_size()
        )));
    }
    let (mut nll_ref, mut nll_other, mut kl) =
        (Moments::default(), Moments::default(), Moments::default());
    let mut agree = 0usize;
    let (mut lp, mut lq) = (Vec::new(), Vec::new());
    let mut done = 0;
    for w in windows {
        let a = window_logits(reference, ids, w)?;
        let b = window_logits(other, ids, w)?;
        for p in w.scored.clone() {
            let (ra, rb) = (
                &a[p * vocab..(p + 1) * vocab],
                &b[p * vocab..(p + 1) * vocab],
            );
            log_softmax(ra, &mut lp);
            log_softmax(rb, &mut lq);
            let target = ids[w.tokens.start + p + 1] as usize;
            nll_ref.push(-lp[target]);
            nll_other.push(-lq[target]);
            let d: f64 = lp.iter().zip(&lq).map(|(p, q)| p.exp() * (p - q)).sum();
            kl.push(d.max(0.0));
            agree += usize::from(argmax(ra) == argmax(rb));
        }
        done += 1;
        if progress(done, windows.len()).is_break() {
            break;
        }
    }
    if done == 0 {
        return Err(EngineError::Invalid("no window was evaluated".into()));
    }
    let n = kl.n.max(1) as f64;
    Ok((
        nll_ref.perplexity(done),
        Comparison {
            other: nll_other.perplexity(done),
            mean_kl: kl.mean(),
            kl_std_error: kl.std_error(),
            max_kl: kl.max,
            top1_agreement: agree as f64 / n,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llamacpp_windows_score_the_second_half() {
        let w = Windows::LlamaCpp { ctx: 8 }.plan(20, Some(1)).unwrap();
        assert_eq!(w.len(), 2);
        assert_eq!(w[1].tokens, 8..16);
        assert_eq!(w[1].scored, 4..7);
        assert_eq!(w[0].first, Some(1));
        assert!(Windows::LlamaCpp { ctx: 8 }.plan(7, None).is_err());
    }

    #[test]
    fn sliding_windows_predict_every_token_once() {
        for (n, ctx, stride) in [(20, 8, 4), (21, 8, 7), (9, 8, 3), (5, 8, 2), (30, 7, 1)] {
            let w = Windows::Sliding { ctx, stride }.plan(n, None).unwrap();
            let mut predicted: Vec<usize> = w
                .iter()
                .flat_map(|w| w.scored.clone().map(move |p| w.tokens.start + p + 1))
                .collect();
            let all: Vec<usize> = (1..n).collect();
            predicted.sort();
            assert_eq!(predicted, all, "n {n} ctx {ctx} stride {stride}");
            assert!(w.iter().all(|w| w.tokens.len() <= ctx));
        }
        assert!(Windows::Sliding { ctx: 8, stride: 9 }
            .plan(20, None)
            .is_err());
    }

    #[test]
    fn moments_give_llamacpp_standard_error() {
        let mut m = Moments::default();
        for v in [1.0, 2.0, 3.0, 4.0] {
            m.push(v);
        }
        let p = m.perplexity(1);
        assert!((p.mean_nll - 2.5).abs() < 1e-12);
        // population variance 1.25, divided by n-1 = 3
        assert!((p.std_error - 2.5f64.exp() * (1.25f64 / 3.0).sqrt()).abs() < 1e-9);
    }
}
