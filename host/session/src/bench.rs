//! `bench`: prefill and decode speed of the loaded model, in the shape other runtimes report it.
//!
//! The work is what llama.cpp's `llama-bench -p N -n M` does, so the two can be compared side
//! by side (`scripts/bench-vs-llamacpp.sh`): a prompt of N token ids in one forward pass
//! ("pp"), then M forward passes of one token each with the KV cache ("tg"). The ids are
//! random, because speed must not depend on what the tokens mean, and seeded, so that a run can
//! be repeated. Decoding takes the argmax: sampling would add its own cost and, with a seed,
//! still pick a path through the vocabulary that differs between runtimes.

use crate::error::SessionError;
use crate::lang;
use crate::session::{CmdResult, Context, Session};
use std::time::Instant;
use tritlab_engine::sampling::argmax;
use tritlab_workbook::{Output, Table};

/// The speeds of one timed run, in tokens per second.
struct Run {
    prefill: f64,
    decode: f64,
}

impl Session {
    pub(crate) fn bench(&self, b: &lang::Bench, ctx: &mut Context<'_>) -> CmdResult {
        let m = self.require_model()?;
        let model = &m.model;
        let context = model.config().max_position_embeddings;
        let (prompt, tokens) = (b.prompt as usize, b.tokens as usize);
        // The last decoded token's position is prompt + tokens − 1; its forward pass needs
        // that many cached positions plus one.
        if prompt + tokens > context {
            return Err(SessionError::Usage(format!(
                "--prompt {prompt} and --tokens {tokens} need {} positions; the model's context \
                 holds {context}",
                prompt + tokens
            )));
        }
        let ids = seeded_ids(b.seed, prompt, model.vocab_size());

        // One untimed pass first: a memory-mapped checkpoint is read from disk page by page the
        // first time each matrix is used, which is loading, not computing.
        ctx.progress("bench: warm-up", 0, Some(u64::from(b.repeat)));
        let mut cache = model.new_cache();
        let warm = ids.len().min(8);
        let logits = model.forward_last(&ids[..warm], &mut cache)?;
        model.forward_last(&[argmax(&logits)], &mut cache)?;

        let mut runs = Vec::with_capacity(b.repeat as usize);
        for r in 0..b.repeat {
            if ctx.cancelled() {
                return Err(SessionError::Cancelled);
            }
            let mut cache = model.new_cache();
            let start = Instant::now();
            let logits = model.forward_last(&ids, &mut cache)?;
            let prefill = start.elapsed().as_secs_f64();
            let mut next = argmax(&logits);
            let start = Instant::now();
            for _ in 0..tokens {
                if ctx.cancelled() {
                    return Err(SessionError::Cancelled);
                }
                next = argmax(&model.forward_last(&[next], &mut cache)?);
            }
            let decode = start.elapsed().as_secs_f64();
            runs.push(Run {
                prefill: prompt as f64 / prefill,
                decode: tokens as f64 / decode,
            });
            ctx.progress("bench", u64::from(r) + 1, Some(u64::from(b.repeat)));
        }

        let speed_row = |name: &str, pick: fn(&Run) -> f64| {
            let mut v: Vec<f64> = runs.iter().map(pick).collect();
            v.sort_by(f64::total_cmp);
            vec![
                name.to_string(),
                format!("{:.2}", median(&v)),
                format!("{:.2}", v[0]),
                format!("{:.2}", v[v.len() - 1]),
                "tokens/s".to_string(),
            ]
        };
        let fact = |name: &str, value: String, unit: &str| {
            vec![
                name.to_string(),
                value,
                String::new(),
                String::new(),
                unit.to_string(),
            ]
        };
        let weights = model.ternary_bytes() + model.float_bytes();
        let peak = peak_resident_bytes().map_or_else(|| "unknown".to_string(), |b| b.to_string());
        let rows = vec![
            speed_row("prefill", |r| r.prefill),
            speed_row("decode", |r| r.decode),
            fact("prompt tokens", prompt.to_string(), "tokens"),
            fact("decoded tokens", tokens.to_string(), "tokens"),
            fact("runs", runs.len().to_string(), ""),
            fact("threads", rayon::current_num_threads().to_string(), ""),
            fact(
                "kernels",
                tritlab_kernels::Backend::active().name().to_string(),
                "",
            ),
            // What the kernels chose for reading weights while the runs decoded.
            fact(
                "single-token products",
                tritlab_kernels::tune::report().to_string(),
                "",
            ),
            fact("output head", model.output_head().to_string(), ""),
            fact("packing", model.packing().to_string(), ""),
            fact("weights", weights.to_string(), "bytes"),
            // Every ternary matrix and the output projection are read once per decoded token:
            // times tokens/s, the memory traffic decode sustains.
            fact(
                "read per decoded token",
                (model.ternary_bytes() + model.head_bytes()).to_string(),
                "bytes",
            ),
            fact("peak resident memory", peak, "bytes"),
        ];
        Ok(vec![Output::Table(Table {
            title: Some(format!(
                "bench {}: {prompt} prompt tokens in one pass, then {tokens} decoded one at a \
                 time, {} runs (median, min, max)",
                m.shown,
                runs.len()
            )),
            columns: ["measure", "value", "min", "max", "unit"]
                .map(String::from)
                .to_vec(),
            rows,
        })])
    }
}

/// `n` token ids below `vocab` from a splitmix64 stream: the same for a seed on every machine,
/// with no dependence on a random-number crate's version.
fn seeded_ids(seed: u64, n: usize, vocab: usize) -> Vec<u32> {
    let mut state = seed;
    (0..n)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            (z % vocab.max(1) as u64) as u32
        })
        .collect()
}

/// The median of sorted, non-empty values.
fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n.is_multiple_of(2) {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    } else {
        sorted[n / 2]
    }
}

/// The process's peak resident set size (`VmHWM`), where the system reports one (Linux).
fn peak_resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_seeded_and_inside_the_vocabulary() {
        let a = seeded_ids(7, 200, 100);
        assert_eq!(a, seeded_ids(7, 200, 100));
        assert_ne!(a, seeded_ids(8, 200, 100));
        assert!(a.iter().all(|&t| t < 100));
        // Not a constant or short cycle.
        let distinct: std::collections::BTreeSet<_> = a.iter().collect();
        assert!(distinct.len() > 50);
    }

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median(&[1.0]), 1.0);
        assert_eq!(median(&[1.0, 2.0, 9.0]), 2.0);
        assert_eq!(median(&[1.0, 2.0, 4.0, 9.0]), 3.0);
    }
}
