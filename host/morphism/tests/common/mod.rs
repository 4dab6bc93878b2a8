//! Sample records shared by the integration tests.

use tritlab_morphism::{ContentHash, LayerMorphism, StepRecord};

/// A small deterministic generator (xorshift64*), so the log tests need no RNG dependency.
pub struct SampleRng(u64);

impl SampleRng {
    pub fn new(seed: u64) -> Self {
        SampleRng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn trit(&mut self) -> i8 {
        (self.next_u64() % 3) as i8 - 1
    }
}

/// A step record over two layers whose trits change at roughly one position in `flip_every`.
pub fn sample_record(step: u64, flip_every: u64) -> StepRecord {
    let mut rng = SampleRng::new(step + 1);
    let mut layers = Vec::new();
    for (name, len) in [
        ("model.layers.0.mlp.up_proj.weight", 700usize),
        ("lm.q", 97),
    ] {
        let before: Vec<i8> = (0..len).map(|_| rng.trit()).collect();
        let after: Vec<i8> = before
            .iter()
            .map(|&t| {
                if rng.next_u64().is_multiple_of(flip_every) {
                    rng.trit()
                } else {
                    t
                }
            })
            .collect();
        let scale = 0.01 * (step as f32 + 1.0);
        layers.push(LayerMorphism::between(name, &before, scale, &after, scale * 1.01).unwrap());
    }
    StepRecord {
        step,
        learning_rate: 1e-3 / (step as f64 + 1.0),
        loss: 3.0 - step as f64 * 0.01,
        grad_norm: 0.5 + step as f64,
        batch_hash: ContentHash::of_bytes(&step.to_le_bytes()),
        batch_position: step * 4096,
        rng_state: rng.next_u64().to_le_bytes().to_vec(),
        world_before: ContentHash::of_bytes(format!("world {step}").as_bytes()),
        world_after: ContentHash::of_bytes(format!("world {}", step + 1).as_bytes()),
        layers,
    }
}
