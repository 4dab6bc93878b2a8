//! Trits as elements of GF(3), and counting them.
//!
//! [`Trit`] and [`TritCounts`] are tritlab's one trit type and one count type: the engine, the
//! trainer, the morphism log, the plugin contract and workbooks all use these. The GF(3) residue
//! (`Σ trits mod 3`, canonical in {0, 1, 2}) is computed only here: [`TritCounts::gf3_sum`],
//! [`Trit::gf3_sum`] and [`gf3_add`] for combining residues.

use crate::error::{KernelError, Result};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A balanced-ternary weight, an element of GF(3). Serialised as the integer −1, 0 or +1, and
/// validated when read, so a deserialised `Trit` is always one of the three.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "i8", into = "i8")]
#[repr(i8)]
pub enum Trit {
    Negative = -1,
    Zero = 0,
    Positive = 1,
}

/// Why an integer is not a trit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0} is not a trit (expected -1, 0 or 1)")]
pub struct NotATrit(pub i8);

impl Trit {
    /// The three trits, in increasing order.
    pub const ALL: [Trit; 3] = [Trit::Negative, Trit::Zero, Trit::Positive];

    /// The trit as −1, 0 or +1.
    pub const fn value(self) -> i8 {
        self as i8
    }

    /// The trit of `value`, if it is −1, 0 or +1.
    pub const fn from_i8(value: i8) -> Option<Trit> {
        match value {
            -1 => Some(Trit::Negative),
            0 => Some(Trit::Zero),
            1 => Some(Trit::Positive),
            _ => None,
        }
    }

    /// The residue of the trit in GF(3): 0, 1 or 2 (−1 ≡ 2).
    pub const fn residue(self) -> u8 {
        match self {
            Trit::Negative => 2,
            Trit::Zero => 0,
            Trit::Positive => 1,
        }
    }

    /// The sum of `trits` in GF(3), in 0..=2: 0 means GF(3)-balanced.
    pub fn gf3_sum(trits: impl IntoIterator<Item = Trit>) -> u8 {
        gf3_add(trits.into_iter().map(Trit::residue))
    }
}

impl From<Trit> for i8 {
    fn from(trit: Trit) -> i8 {
        trit.value()
    }
}

impl TryFrom<i8> for Trit {
    type Error = NotATrit;

    fn try_from(value: i8) -> std::result::Result<Trit, NotATrit> {
        Trit::from_i8(value).ok_or(NotATrit(value))
    }
}

impl fmt::Display for Trit {
    /// `-1`, `0` or `+1`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Trit::Negative => "-1",
            Trit::Zero => "0",
            Trit::Positive => "+1",
        })
    }
}

/// Sums GF(3) residues (each in 0..=2, as [`TritCounts::gf3_sum`] gives them) into one residue:
/// the residue of a whole model from its layers' residues, for example.
pub fn gf3_add(residues: impl IntoIterator<Item = u8>) -> u8 {
    residues.into_iter().fold(0u8, |acc, r| (acc + r % 3) % 3)
}

/// How many trits of each value a tensor (or row, or layer) holds. Serialised with the field
/// names of the plugin contract (`negative`, `zero`, `positive`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TritCounts {
    #[serde(rename = "negative")]
    pub neg: u64,
    pub zero: u64,
    #[serde(rename = "positive")]
    pub pos: u64,
}

impl TritCounts {
    /// Counts typed trits (which need no validation, unlike [`count_trits`]).
    pub fn of(trits: &[Trit]) -> TritCounts {
        let mut counts = TritCounts::default();
        for &t in trits {
            counts.add_trit(t);
        }
        counts
    }

    pub fn total(&self) -> u64 {
        self.neg + self.zero + self.pos
    }

    /// Σ trits mod 3, as the canonical residue in {0, 1, 2}, computed without overflow.
    pub fn gf3_sum(&self) -> u8 {
        ((self.pos % 3 + 3 - self.neg % 3) % 3) as u8
    }

    /// Σ trits as a plain signed integer (pos - neg).
    pub fn signed_sum(&self) -> i64 {
        self.pos as i64 - self.neg as i64
    }

    /// Counts one raw trit; callers have validated it (anything above 0 counts as +1).
    pub fn add(&mut self, trit: i8) {
        match trit {
            -1 => self.neg += 1,
            0 => self.zero += 1,
            _ => self.pos += 1,
        }
    }

    pub fn add_trit(&mut self, trit: Trit) {
        match trit {
            Trit::Negative => self.neg += 1,
            Trit::Zero => self.zero += 1,
            Trit::Positive => self.pos += 1,
        }
    }

    pub fn merge(&mut self, other: &TritCounts) {
        self.neg += other.neg;
        self.zero += other.zero;
        self.pos += other.pos;
    }
}

/// Trits checked and counted per pass: the counters of a pass fit in `u32`, and a pass is long
/// enough for the compiler's vector loop to dominate.
const PASS: usize = 1 << 16;

/// Counts the trits in a slice. Values outside {-1, 0, +1} are rejected.
///
/// Loading a 2B-parameter model counts two billion trits, so the loop has no branch per value:
/// each pass adds comparisons into counters and ORs an "invalid" flag, which the compiler turns
/// into vector code; only a pass that saw an invalid value is searched again for its index.
pub fn count_trits(trits: &[i8]) -> Result<TritCounts> {
    let mut counts = TritCounts::default();
    for (pass, chunk) in trits.chunks(PASS).enumerate() {
        let (mut neg, mut pos, mut bad) = (0u32, 0u32, 0u8);
        for &t in chunk {
            neg += u32::from(t == -1);
            pos += u32::from(t == 1);
            // -1, 0, 1 become 0, 1, 2; anything else is above 2.
            bad |= u8::from((t as u8).wrapping_add(1) > 2);
        }
        if bad != 0 {
            validate_trits(chunk).map_err(|e| match e {
                KernelError::NotATrit { index, value } => KernelError::NotATrit {
                    index: pass * PASS + index,
                    value,
                },
                other => other,
            })?;
        }
        counts.neg += u64::from(neg);
        counts.pos += u64::from(pos);
        counts.zero += (chunk.len() as u32 - neg - pos) as u64;
    }
    Ok(counts)
}

/// Checks that every value is a trit.
pub fn validate_trits(trits: &[i8]) -> Result<()> {
    for (pass, chunk) in trits.chunks(PASS).enumerate() {
        let bad = chunk
            .iter()
            .fold(0u8, |bad, &t| bad | u8::from((t as u8).wrapping_add(1) > 2));
        if bad != 0 {
            let index = chunk
                .iter()
                .position(|t| !(-1..=1).contains(t))
                .expect("a pass that saw an invalid value has one");
            return Err(KernelError::NotATrit {
                index: pass * PASS + index,
                value: chunk[index],
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_errors_across_passes() {
        // Longer than two passes, with every value at the pass edges.
        let n = 2 * PASS + 77;
        let trits: Vec<i8> = (0..n).map(|i| ((i * 7 + i / 3) % 3) as i8 - 1).collect();
        let c = count_trits(&trits).unwrap();
        let naive = |v: i8| trits.iter().filter(|&&t| t == v).count() as u64;
        assert_eq!((c.neg, c.zero, c.pos), (naive(-1), naive(0), naive(1)));
        assert!(validate_trits(&trits).is_ok());
        for (at, value) in [(0, 2i8), (PASS - 1, -2), (PASS, 127), (2 * PASS + 75, -128)] {
            let mut bad = trits.clone();
            bad[at] = value;
            bad[n - 1] = 3; // a later invalid value must not be the one reported
            let expected = Err(KernelError::NotATrit { index: at, value });
            assert_eq!(count_trits(&bad).map(|_| ()), expected);
            assert_eq!(validate_trits(&bad), expected);
        }
        assert_eq!(count_trits(&[]).unwrap(), TritCounts::default());
    }

    #[test]
    fn gf3_sum_is_canonical() {
        let c = count_trits(&[1, 1, 1, -1, 0]).unwrap();
        assert_eq!(c.signed_sum(), 2);
        assert_eq!(c.gf3_sum(), 2);
        let c = count_trits(&[-1, -1]).unwrap();
        assert_eq!(c.gf3_sum(), 1); // -2 ≡ 1 (mod 3)
        assert!(count_trits(&[0, 2]).is_err());
    }

    #[test]
    fn typed_trits_agree_with_counts() {
        let raw = [1i8, -1, -1, 0, 1, -1, -1];
        let typed: Vec<Trit> = raw.iter().map(|&v| Trit::try_from(v).unwrap()).collect();
        let counts = count_trits(&raw).unwrap();
        assert_eq!(TritCounts::of(&typed), counts);
        assert_eq!(Trit::gf3_sum(typed.iter().copied()), counts.gf3_sum());
        assert_eq!(gf3_add([2, 2, 1, 0]), 2);
        assert_eq!(Trit::try_from(2), Err(NotATrit(2)));
        assert_eq!(Trit::Negative.to_string(), "-1");
    }
}
