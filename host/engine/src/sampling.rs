//! Choosing the next token: greedy, temperature, top-k, top-p, from a seeded ChaCha20 stream.
//!
//! ChaCha20 is specified bit for bit, the probabilities are computed in f64 with `libm`'s `exp`,
//! and ties are broken by token id, so a seed gives the same tokens on every run and machine.

use crate::error::{EngineError, Result};
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SamplingOptions {
    /// 0 means greedy (argmax).
    pub temperature: f32,
    /// Keep only the `k` most likely tokens (`None` or 0: all).
    pub top_k: Option<usize>,
    /// Keep the smallest set of most likely tokens whose probability reaches `p` (`None` or 1: all).
    pub top_p: Option<f32>,
    pub seed: u64,
}

impl Default for SamplingOptions {
    fn default() -> Self {
        Self {
            temperature: 0.0,
            top_k: None,
            top_p: None,
            seed: 0,
        }
    }
}

impl SamplingOptions {
    pub fn greedy() -> Self {
        Self::default()
    }

    pub fn validate(&self) -> Result<()> {
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return Err(EngineError::Invalid(format!(
                "temperature {} must be ≥ 0",
                self.temperature
            )));
        }
        if let Some(p) = self.top_p {
            if !(p > 0.0 && p <= 1.0) {
                return Err(EngineError::Invalid(format!("top-p {p} must be in (0, 1]")));
            }
        }
        Ok(())
    }
}

/// A seeded sampler.
#[derive(Debug, Clone)]
pub struct Sampler {
    options: SamplingOptions,
    rng: ChaCha20Rng,
}

/// Orders logits descending, NaN last, ties by smaller id.
fn by_logit_desc(logits: &[f32]) -> impl Fn(&usize, &usize) -> std::cmp::Ordering + '_ {
    move |&a, &b| {
        let (x, y) = (logits[a], logits[b]);
        let key = |v: f32| if v.is_nan() { f32::NEG_INFINITY } else { v };
        key(y).total_cmp(&key(x)).then(a.cmp(&b))
    }
}

/// Index of the largest logit (the first one on ties; NaN never wins).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0usize;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[best] || logits[best].is_nan() && !v.is_nan() {
            best = i;
        }
    }
    best as u32
}

impl Sampler {
    pub fn new(options: SamplingOptions) -> Result<Self> {
        options.validate()?;
        let rng = ChaCha20Rng::seed_from_u64(options.seed);
        Ok(Self { options, rng })
    }

    pub fn options(&self) -> &SamplingOptions {
        &self.options
    }

    /// A uniform number in [0, 1) from 53 random bits.
    fn uniform(&mut self) -> f64 {
        (self.rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Picks a token id from one position's logits.
    pub fn sample(&mut self, logits: &[f32]) -> Result<u32> {
        if logits.is_empty() {
            return Err(EngineError::Invalid("no logits to sample from".into()));
        }
        let o = &self.options;
        if o.temperature == 0.0 {
            return Ok(argmax(logits));
        }
        let top_k = o.top_k.filter(|&k| k > 0 && k < logits.len());
        let top_p = o.top_p.filter(|&p| p < 1.0);
        // Candidates, most likely first when a cut needs the order.
        let mut ids: Vec<usize> = (0..logits.len()).collect();
        if let Some(k) = top_k {
            ids.select_nth_unstable_by(k - 1, by_logit_desc(logits));
            ids.truncate(k);
        }
        if top_k.is_some() || top_p.is_some() {
            ids.sort_unstable_by(by_logit_desc(logits));
        }
        let max = ids
            .iter()
            .map(|&i| logits[i])
            .filter(|v| !v.is_nan())
            .fold(f32::NEG_INFINITY, f32::max);
        if max == f32::NEG_INFINITY {
            return Ok(argmax(logits));
        }
        let inv_t = 1.0 / o.temperature as f64;
        let mut probs: Vec<f64> = ids
            .iter()
            .map(|&i| {
                let v = logits[i];
                if v.is_nan() {
                    0.0
                } else {
                    libm::exp((v as f64 - max as f64) * inv_t)
                }
            })
            .collect();
        let mut total: f64 = probs.iter().sum();
        if let Some(p) = top_p {
            let target = p as f64 * total;
            let mut cum = 0.0;
            let mut keep = probs.len();
            for (n, &q) in probs.iter().enumerate() {
                cum += q;
                if cum >= target {
                    keep = n + 1;
                    break;
                }
            }
            probs.truncate(keep);
            ids.truncate(keep);
            total = probs.iter().sum();
        }
        let mut u = self.uniform() * total;
        for (&i, &q) in ids.iter().zip(&probs) {
            if u < q {
                return Ok(i as u32);
            }
            u -= q;
        }
        // Rounding left a sliver past the last candidate.
        Ok(ids[probs.iter().rposition(|&q| q > 0.0).unwrap_or(0)] as u32)
    }
}

/// One of the most likely tokens at a step.
#[derive(Debug, Clone, Serialize)]
pub struct TopToken {
    pub id: u32,
    pub logit: f32,
    /// Probability under the unscaled softmax.
    pub prob: f32,
}

/// Summary of one position's logits.
#[derive(Debug, Clone, Serialize)]
pub struct LogitStats {
    pub max: f32,
    pub mean: f32,
    /// Entropy of softmax(logits) in nats.
    pub entropy: f32,
    /// `ln Σ exp(logit)`: a token's log-probability is its logit minus this.
    pub log_sum_exp: f64,
    pub top: Vec<TopToken>,
}

impl LogitStats {
    pub fn compute(logits: &[f32], top_n: usize) -> Self {
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mean =
            (logits.iter().map(|&v| v as f64).sum::<f64>() / logits.len().max(1) as f64) as f32;
        let mut z = 0.0f64;
        let mut s = 0.0f64;
        for &v in logits {
            let d = (v - max) as f64;
            let e = libm::exp(d);
            z += e;
            s += e * d;
        }
        // H = log Z − E[d], with d = logit − max.
        let entropy = (libm::log(z) - s / z) as f32;
        let mut ids: Vec<usize> = (0..logits.len()).collect();
        let n = top_n.min(logits.len());
        if n > 0 && n < ids.len() {
            ids.select_nth_unstable_by(n - 1, by_logit_desc(logits));
        }
        ids.truncate(n);
        ids.sort_unstable_by(by_logit_desc(logits));
        let top = ids
            .into_iter()
            .map(|i| TopToken {
                id: i as u32,
                logit: logits[i],
                prob: (libm::exp((logits[i] - max) as f64) / z) as f32,
            })
            .collect();
        Self {
            max,
            mean,
            entropy,
            log_sum_exp: max as f64 + libm::log(z),
            top,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_is_argmax_and_seeded_sampling_repeats() {
        let logits = [0.1f32, 2.0, 1.9, -1.0];
        assert_eq!(
            Sampler::new(SamplingOptions::greedy())
                .unwrap()
                .sample(&logits)
                .unwrap(),
            1
        );
        let opts = SamplingOptions {
            temperature: 1.0,
            seed: 7,
            ..Default::default()
        };
        let a: Vec<u32> = {
            let mut s = Sampler::new(opts.clone()).unwrap();
            (0..50).map(|_| s.sample(&logits).unwrap()).collect()
        };
        let mut s = Sampler::new(opts).unwrap();
        let b: Vec<u32> = (0..50).map(|_| s.sample(&logits).unwrap()).collect();
        assert_eq!(a, b);
        assert!(a.contains(&2) && a.contains(&1));
    }

    #[test]
    fn top_k_and_top_p_cut() {
        let logits = [5.0f32, 4.0, 0.0, -3.0];
        let mut s = Sampler::new(SamplingOptions {
            temperature: 1.0,
            top_k: Some(2),
            seed: 1,
            ..Default::default()
        })
        .unwrap();
        assert!((0..200).all(|_| s.sample(&logits).unwrap() < 2));
        let mut s = Sampler::new(SamplingOptions {
            temperature: 1.0,
            top_p: Some(0.5),
            seed: 1,
            ..Default::default()
        })
        .unwrap();
        assert!((0..200).all(|_| s.sample(&logits).unwrap() == 0));
    }

    #[test]
    fn entropy_of_uniform() {
        let st = LogitStats::compute(&[1.0; 4], 2);
        assert!((st.entropy - 4f32.ln()).abs() < 1e-6);
        assert_eq!(st.top.len(), 2);
    }
}
