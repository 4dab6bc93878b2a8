//! Trit statistics: of the stored weights (per tensor, per layer) and of each decoding step.

use serde::Serialize;
use tritlab_kernels::TritCounts;

/// Counts of −1 / 0 / +1 and their sum in GF(3) (`Σ trits mod 3`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TritSummary {
    pub neg: u64,
    pub zero: u64,
    pub pos: u64,
    pub gf3_sum: u8,
}

impl From<TritCounts> for TritSummary {
    fn from(c: TritCounts) -> Self {
        Self {
            neg: c.neg,
            zero: c.zero,
            pos: c.pos,
            gf3_sum: c.gf3_sum(),
        }
    }
}

impl TritSummary {
    pub fn total(&self) -> u64 {
        self.neg + self.zero + self.pos
    }

    pub fn counts(&self) -> TritCounts {
        TritCounts {
            neg: self.neg,
            zero: self.zero,
            pos: self.pos,
        }
    }

    pub fn merge(&mut self, other: &TritSummary) {
        let mut c = self.counts();
        c.merge(&other.counts());
        *self = c.into();
    }

    /// Fraction of zeros (0 when empty).
    pub fn zero_fraction(&self) -> f64 {
        if self.total() == 0 {
            0.0
        } else {
            self.zero as f64 / self.total() as f64
        }
    }
}

/// One ternary linear layer's weights.
#[derive(Debug, Clone, Serialize)]
pub struct TensorTritStats {
    pub name: String,
    pub rows: usize,
    pub cols: usize,
    /// The per-tensor weight scale the kernels multiply by.
    pub scale: f32,
    pub trits: TritSummary,
}

/// All ternary weights of one decoder layer.
#[derive(Debug, Clone, Serialize)]
pub struct LayerTritStats {
    pub layer: usize,
    pub tensors: Vec<TensorTritStats>,
    pub total: TritSummary,
}

/// Trit statistics of one forward step, for tracers.
///
/// The weights are fixed, so their trits carry no per-step signal. What changes from token to
/// token is what the ternary weights multiply: the int8 activations. Their signs are trits
/// (−1, 0, +1) and say how the step used the layer — a zero activation is skipped work in every
/// row, and the balance of signs shifts with the input. For each decoder layer this records the
/// sign counts of the int8 activations entering its four distinct ternary products (q/k/v share
/// one input, then o, gate/up, down) for the last token of the step, with their GF(3) sum.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StepTritStats {
    pub layers: Vec<TritSummary>,
    pub total: TritSummary,
}

impl StepTritStats {
    pub(crate) fn record(&mut self, layer: usize, q: &[i8]) {
        if self.layers.len() <= layer {
            self.layers.resize(layer + 1, TritSummary::default());
        }
        let mut c = TritCounts::default();
        for &v in q {
            c.add(v.signum());
        }
        let s = TritSummary::from(c);
        self.layers[layer].merge(&s);
        self.total.merge(&s);
    }
}
