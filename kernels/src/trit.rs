//! Trits as elements of GF(3), and counting them.

use crate::error::{KernelError, Result};

/// How many trits of each value a tensor (or row, or layer) holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct TritCounts {
    pub neg: u64,
    pub zero: u64,
    pub pos: u64,
}

impl TritCounts {
    pub fn total(&self) -> u64 {
        self.neg + self.zero + self.pos
    }

    /// Σ trits mod 3, as the canonical residue in {0, 1, 2}.
    pub fn gf3_sum(&self) -> u8 {
        gf3_from_counts(self.neg, self.pos)
    }

    /// Σ trits as a plain signed integer (pos - neg).
    pub fn signed_sum(&self) -> i64 {
        self.pos as i64 - self.neg as i64
    }

    pub fn add(&mut self, trit: i8) {
        match trit {
            -1 => self.neg += 1,
            0 => self.zero += 1,
            _ => self.pos += 1,
        }
    }

    pub fn merge(&mut self, other: &TritCounts) {
        self.neg += other.neg;
        self.zero += other.zero;
        self.pos += other.pos;
    }
}

/// The GF(3) residue of `pos - neg`, computed without overflow.
pub fn gf3_from_counts(neg: u64, pos: u64) -> u8 {
    ((pos % 3 + 3 - neg % 3) % 3) as u8
}

/// Counts the trits in a slice. Values outside {-1, 0, +1} are rejected.
pub fn count_trits(trits: &[i8]) -> Result<TritCounts> {
    let mut counts = TritCounts::default();
    for (index, &t) in trits.iter().enumerate() {
        if !(-1..=1).contains(&t) {
            return Err(KernelError::NotATrit { index, value: t });
        }
        counts.add(t);
    }
    Ok(counts)
}

/// Checks that every value is a trit.
pub fn validate_trits(trits: &[i8]) -> Result<()> {
    match trits.iter().position(|t| !(-1..=1).contains(t)) {
        Some(index) => Err(KernelError::NotATrit {
            index,
            value: trits[index],
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gf3_sum_is_canonical() {
        let c = count_trits(&[1, 1, 1, -1, 0]).unwrap();
        assert_eq!(c.signed_sum(), 2);
        assert_eq!(c.gf3_sum(), 2);
        let c = count_trits(&[-1, -1]).unwrap();
        assert_eq!(c.gf3_sum(), 1); // -2 ≡ 1 (mod 3)
        assert!(count_trits(&[0, 2]).is_err());
    }
}
