//! The server's metrics in Prometheus' text exposition format (version 0.0.4), written by hand:
//! a few counters, two gauges and four histograms need no metrics framework.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;

/// A histogram with fixed upper bounds (`le`), cumulative as Prometheus expects when written.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    state: Mutex<HistogramState>,
}

#[derive(Debug, Default)]
struct HistogramState {
    /// Per bucket, not cumulative; one more than `bounds` for `+Inf`.
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            state: Mutex::new(HistogramState {
                counts: vec![0; bounds.len() + 1],
                ..HistogramState::default()
            }),
        }
    }

    pub fn observe(&self, value: f64) {
        let bucket = self
            .bounds
            .iter()
            .position(|&b| value <= b)
            .unwrap_or(self.bounds.len());
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.counts[bucket] += 1;
        s.sum += value;
        s.count += 1;
    }

    fn write(&self, out: &mut String, name: &str, help: &str) {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, &b) in self.bounds.iter().enumerate() {
            cumulative += s.counts[i];
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", s.count);
        let _ = writeln!(out, "{name}_sum {}", s.sum);
        let _ = writeln!(out, "{name}_count {}", s.count);
    }
}

const SECONDS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
const BATCH: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0];

/// Everything `GET /metrics` reports. Shared by the HTTP handlers and the engine thread.
#[derive(Debug)]
pub struct Metrics {
    /// Finished HTTP requests by endpoint and status.
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    pub prompt_tokens: AtomicU64,
    pub generated_tokens: AtomicU64,
    /// Sequences dropped because their client went away.
    pub cancelled: AtomicU64,
    /// Sequences ended by the per-request time limit.
    pub timed_out: AtomicU64,
    /// Sequences failed by an engine error or a panic (each answered with a 500).
    pub failed: AtomicU64,
    /// Requests refused with 429 because the queue was full.
    pub rejected: AtomicU64,
    /// Requests accepted but not yet running.
    pub queue_depth: AtomicI64,
    /// Sequences running (prefilling or decoding).
    pub active: AtomicI64,
    /// Sequences per engine step.
    pub batch_size: Histogram,
    /// Seconds from a request's arrival to its first generated token.
    pub time_to_first_token: Histogram,
    /// Seconds between consecutive tokens of one sequence.
    pub inter_token_latency: Histogram,
    /// Seconds per engine step (one batched forward pass and its sampling).
    pub step_seconds: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            requests: Mutex::default(),
            prompt_tokens: AtomicU64::new(0),
            generated_tokens: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            timed_out: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            queue_depth: AtomicI64::new(0),
            active: AtomicI64::new(0),
            batch_size: Histogram::new(BATCH),
            time_to_first_token: Histogram::new(SECONDS),
            inter_token_latency: Histogram::new(SECONDS),
            step_seconds: Histogram::new(SECONDS),
        }
    }
}

impl Metrics {
    pub fn count_request(&self, endpoint: &'static str, status: u16) {
        let mut r = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        *r.entry((endpoint, status)).or_default() += 1;
    }

    /// The text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP tritlab_requests_total HTTP requests answered, by endpoint and status.\n\
             # TYPE tritlab_requests_total counter"
        );
        for ((endpoint, status), n) in self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "tritlab_requests_total{{endpoint=\"{endpoint}\",status=\"{status}\"}} {n}"
            );
        }
        let counters = [
            (
                "tritlab_prompt_tokens_total",
                "Prompt tokens read.",
                &self.prompt_tokens,
            ),
            (
                "tritlab_generated_tokens_total",
                "Tokens generated.",
                &self.generated_tokens,
            ),
            (
                "tritlab_requests_cancelled_total",
                "Sequences dropped because the client went away.",
                &self.cancelled,
            ),
            (
                "tritlab_requests_timed_out_total",
                "Sequences ended by the per-request time limit.",
                &self.timed_out,
            ),
            (
                "tritlab_requests_failed_total",
                "Sequences failed by an engine error or a panic.",
                &self.failed,
            ),
            (
                "tritlab_requests_rejected_total",
                "Requests refused because the queue was full.",
                &self.rejected,
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                value.load(Ordering::Relaxed)
            );
        }
        let gauges = [
            (
                "tritlab_queue_depth",
                "Requests accepted but not yet running.",
                &self.queue_depth,
            ),
            (
                "tritlab_active_sequences",
                "Sequences running.",
                &self.active,
            ),
        ];
        for (name, help, value) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {}",
                value.load(Ordering::Relaxed).max(0)
            );
        }
        self.batch_size
            .write(&mut out, "tritlab_batch_size", "Sequences per engine step.");
        self.time_to_first_token.write(
            &mut out,
            "tritlab_time_to_first_token_seconds",
            "Seconds from a request's arrival to its first generated token.",
        );
        self.inter_token_latency.write(
            &mut out,
            "tritlab_inter_token_latency_seconds",
            "Seconds between consecutive tokens of one sequence.",
        );
        self.step_seconds.write(
            &mut out,
            "tritlab_step_seconds",
            "Seconds per engine step (one batched forward pass and its sampling).",
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_with_sum_and_count() {
        let h = Histogram::new(&[1.0, 2.0]);
        for v in [0.5, 1.5, 1.5, 9.0] {
            h.observe(v);
        }
        let mut out = String::new();
        h.write(&mut out, "x", "help");
        assert!(out.contains("x_bucket{le=\"1\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"2\"} 3\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"+Inf\"} 4\n"), "{out}");
        assert!(out.contains("x_sum 12.5\nx_count 4\n"), "{out}");
    }
}
