//! The exact change an optimiser step makes to one ternary tensor: which weights flipped, from
//! what to what, and the 3×3 transition counts that summarise it.

use thiserror::Error;
use tritlab_kernels::trit::TritCounts;

/// Why a set of flips cannot be built, decoded or applied.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FlipError {
    #[error("the tensors differ in length: {before} trits before, {after} after")]
    LengthMismatch { before: usize, after: usize },
    #[error("the {side} tensor holds {value} at index {index}, which is not a trit")]
    NotATrit {
        side: TensorSide,
        index: usize,
        value: i8,
    },
    #[error("the tensor holds {actual} trits but the flips describe {expected}")]
    WrongTensorLength { expected: u64, actual: u64 },
    #[error("flip position {position} lies outside a tensor of {len} trits")]
    PositionOutOfRange { position: u64, len: u64 },
    #[error("flip positions must strictly increase: {position} follows {previous}")]
    PositionsNotIncreasing { previous: u64, position: u64 },
    #[error(
        "a flip at position {position} goes from {old} to {new}, which is not a change of trit"
    )]
    NotAFlip { position: u64, old: i8, new: i8 },
    #[error("at position {position} the flip expects {expected} but the tensor holds {found}")]
    TritMismatch {
        position: u64,
        expected: i8,
        found: i8,
    },
    #[error(
        "the transition matrix counts {matrix} weights going {old}→{new} but the flips list {listed}"
    )]
    TransitionCountMismatch {
        old: i8,
        new: i8,
        matrix: u64,
        listed: u64,
    },
    #[error("the transition matrix counts more weights than a u64 holds")]
    CountOverflow,
}

/// Which of the two tensors a [`FlipError::NotATrit`] was found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TensorSide {
    Before,
    After,
}

impl std::fmt::Display for TensorSide {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TensorSide::Before => "before",
            TensorSide::After => "after",
        })
    }
}

/// The three trits in matrix order: index `t + 1` holds trit `t`.
pub const TRITS: [i8; 3] = [-1, 0, 1];

fn trit_index(trit: i8) -> usize {
    (trit + 1) as usize
}

/// `counts[old + 1][new + 1]` weights went from trit `old` to trit `new` in one step.
///
/// Row sums are the trit counts before the step, column sums the counts after, and the whole
/// matrix sums to the tensor's length; the diagonal is what stayed put.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct TransitionMatrix {
    pub counts: [[u64; 3]; 3],
}

impl TransitionMatrix {
    /// How many weights went from `old` to `new` (both in {-1, 0, +1}).
    pub fn get(&self, old: i8, new: i8) -> u64 {
        self.counts[trit_index(old)][trit_index(new)]
    }

    /// The number of weights the matrix describes, or `None` if that overflows a u64.
    pub fn checked_total(&self) -> Option<u64> {
        self.counts
            .iter()
            .flatten()
            .try_fold(0u64, |sum, &count| sum.checked_add(count))
    }

    /// The number of weights the matrix describes (saturating; decoded matrices never overflow).
    pub fn total(&self) -> u64 {
        self.checked_total().unwrap_or(u64::MAX)
    }

    /// The number of weights whose trit changed: the off-diagonal sum.
    pub fn changed(&self) -> u64 {
        let mut changed = 0u64;
        for (old, row) in self.counts.iter().enumerate() {
            for (new, &count) in row.iter().enumerate() {
                if old != new {
                    changed = changed.saturating_add(count);
                }
            }
        }
        changed
    }

    /// Trit counts before the step (row sums).
    pub fn counts_before(&self) -> TritCounts {
        let row = |i: usize| {
            self.counts[i]
                .iter()
                .fold(0u64, |s, &c| s.saturating_add(c))
        };
        TritCounts {
            neg: row(0),
            zero: row(1),
            pos: row(2),
        }
    }

    /// Trit counts after the step (column sums).
    pub fn counts_after(&self) -> TritCounts {
        let column = |j: usize| {
            self.counts
                .iter()
                .fold(0u64, |s, row| s.saturating_add(row[j]))
        };
        TritCounts {
            neg: column(0),
            zero: column(1),
            pos: column(2),
        }
    }
}

/// One weight whose trit changed: its flat position in the tensor, and the trit before and after.
///
/// Storing both trits makes a flip invertible and lets replay check that it is applied to the
/// world it was recorded against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TritFlip {
    pub position: u64,
    pub old: i8,
    pub new: i8,
}

/// Every trit change one step made to one tensor, plus the full transition matrix.
///
/// The fields are private so that every value upholds the invariants replay relies on: positions
/// strictly increase and lie inside the tensor, each flip changes a trit, and the matrix's
/// off-diagonal entries equal the flips listed for each (old, new) pair.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TritFlips {
    transitions: TransitionMatrix,
    flips: Vec<TritFlip>,
}

impl TritFlips {
    /// Compares a tensor's trits before and after a step. Both slices must have the same length
    /// and hold only -1, 0 and +1.
    pub fn between(before: &[i8], after: &[i8]) -> Result<Self, FlipError> {
        if before.len() != after.len() {
            return Err(FlipError::LengthMismatch {
                before: before.len(),
                after: after.len(),
            });
        }
        let mut transitions = TransitionMatrix::default();
        let mut flips = Vec::new();
        for (index, (&old, &new)) in before.iter().zip(after).enumerate() {
            for (side, value) in [(TensorSide::Before, old), (TensorSide::After, new)] {
                if !(-1..=1).contains(&value) {
                    return Err(FlipError::NotATrit { side, index, value });
                }
            }
            transitions.counts[trit_index(old)][trit_index(new)] += 1;
            if old != new {
                flips.push(TritFlip {
                    position: index as u64,
                    old,
                    new,
                });
            }
        }
        Ok(TritFlips { transitions, flips })
    }

    /// Builds flips from a transition matrix and a flip list (as decoded from a log), checking
    /// every invariant of [`TritFlips`].
    pub fn from_parts(
        transitions: TransitionMatrix,
        flips: Vec<TritFlip>,
    ) -> Result<Self, FlipError> {
        let len = transitions
            .checked_total()
            .ok_or(FlipError::CountOverflow)?;
        let mut listed = [[0u64; 3]; 3];
        let mut previous: Option<u64> = None;
        for flip in &flips {
            if let Some(previous) = previous {
                if flip.position <= previous {
                    return Err(FlipError::PositionsNotIncreasing {
                        previous,
                        position: flip.position,
                    });
                }
            }
            previous = Some(flip.position);
            if flip.position >= len {
                return Err(FlipError::PositionOutOfRange {
                    position: flip.position,
                    len,
                });
            }
            let is_trit = |t: i8| (-1..=1).contains(&t);
            if !is_trit(flip.old) || !is_trit(flip.new) || flip.old == flip.new {
                return Err(FlipError::NotAFlip {
                    position: flip.position,
                    old: flip.old,
                    new: flip.new,
                });
            }
            listed[trit_index(flip.old)][trit_index(flip.new)] += 1;
        }
        for old in TRITS {
            for new in TRITS {
                let (matrix, listed) = (
                    transitions.get(old, new),
                    listed[trit_index(old)][trit_index(new)],
                );
                if old != new && matrix != listed {
                    return Err(FlipError::TransitionCountMismatch {
                        old,
                        new,
                        matrix,
                        listed,
                    });
                }
            }
        }
        Ok(TritFlips { transitions, flips })
    }

    /// The number of trits in the tensor.
    pub fn len(&self) -> u64 {
        self.transitions.total()
    }

    /// Whether the tensor has no trits at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn transitions(&self) -> &TransitionMatrix {
        &self.transitions
    }

    /// The changed weights, in increasing position order.
    pub fn flips(&self) -> &[TritFlip] {
        &self.flips
    }

    pub fn counts_before(&self) -> TritCounts {
        self.transitions.counts_before()
    }

    pub fn counts_after(&self) -> TritCounts {
        self.transitions.counts_after()
    }

    /// Σ trits mod 3 before the step, in {0, 1, 2} (the kernels' definition).
    pub fn gf3_before(&self) -> u8 {
        self.counts_before().gf3_sum()
    }

    /// Σ trits mod 3 after the step, in {0, 1, 2} (the kernels' definition).
    pub fn gf3_after(&self) -> u8 {
        self.counts_after().gf3_sum()
    }

    /// Turns the tensor as it was before the step into the tensor after it.
    ///
    /// Every flip is checked before any is applied, so on error the tensor is left unchanged.
    pub fn apply_forward(&self, tensor: &mut [i8]) -> Result<(), FlipError> {
        self.apply(tensor, |flip| (flip.old, flip.new))
    }

    /// Turns the tensor as it was after the step back into the tensor before it.
    ///
    /// Every flip is checked before any is applied, so on error the tensor is left unchanged.
    pub fn apply_backward(&self, tensor: &mut [i8]) -> Result<(), FlipError> {
        self.apply(tensor, |flip| (flip.new, flip.old))
    }

    fn apply(
        &self,
        tensor: &mut [i8],
        from_to: impl Fn(&TritFlip) -> (i8, i8),
    ) -> Result<(), FlipError> {
        let len = self.len();
        if tensor.len() as u64 != len {
            return Err(FlipError::WrongTensorLength {
                expected: len,
                actual: tensor.len() as u64,
            });
        }
        for flip in &self.flips {
            let (expected, _) = from_to(flip);
            let found = usize::try_from(flip.position)
                .ok()
                .and_then(|index| tensor.get(index).copied())
                .ok_or(FlipError::PositionOutOfRange {
                    position: flip.position,
                    len,
                })?;
            if found != expected {
                return Err(FlipError::TritMismatch {
                    position: flip.position,
                    expected,
                    found,
                });
            }
        }
        for flip in &self.flips {
            let (_, target) = from_to(flip);
            // In range: checked in the loop above.
            tensor[flip.position as usize] = target;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn between_records_flips_and_transitions() {
        let before = [-1, 0, 1, 1, 0];
        let after = [0, 0, -1, 1, 1];
        let flips = TritFlips::between(&before, &after).unwrap();
        assert_eq!(
            flips.flips(),
            &[
                TritFlip {
                    position: 0,
                    old: -1,
                    new: 0
                },
                TritFlip {
                    position: 2,
                    old: 1,
                    new: -1
                },
                TritFlip {
                    position: 4,
                    old: 0,
                    new: 1
                },
            ]
        );
        let m = flips.transitions();
        assert_eq!((m.get(-1, 0), m.get(1, -1), m.get(0, 1)), (1, 1, 1));
        assert_eq!((m.get(0, 0), m.get(1, 1)), (1, 1));
        assert_eq!(m.total(), 5);
        assert_eq!(m.changed(), 3);
        assert_eq!(
            flips.counts_before(),
            TritCounts {
                neg: 1,
                zero: 2,
                pos: 2
            }
        );
        assert_eq!(
            flips.counts_after(),
            TritCounts {
                neg: 1,
                zero: 2,
                pos: 2
            }
        );
        assert_eq!(flips.gf3_before(), 1);
    }

    #[test]
    fn between_rejects_bad_input() {
        assert!(matches!(
            TritFlips::between(&[0, 1], &[0]),
            Err(FlipError::LengthMismatch {
                before: 2,
                after: 1
            })
        ));
        assert!(matches!(
            TritFlips::between(&[0, 2], &[0, 1]),
            Err(FlipError::NotATrit {
                side: TensorSide::Before,
                index: 1,
                value: 2
            })
        ));
    }

    #[test]
    fn apply_checks_before_changing_anything() {
        let flips = TritFlips::between(&[0, 0, 0], &[1, 0, -1]).unwrap();
        let mut wrong = [1, 0, 1];
        // Position 0 already holds the new trit and position 2 holds neither: nothing may change.
        assert!(matches!(
            flips.apply_forward(&mut wrong),
            Err(FlipError::TritMismatch {
                position: 0,
                expected: 0,
                found: 1
            })
        ));
        assert_eq!(wrong, [1, 0, 1]);
        assert!(matches!(
            flips.apply_forward(&mut [0, 0]),
            Err(FlipError::WrongTensorLength {
                expected: 3,
                actual: 2
            })
        ));
    }

    #[test]
    fn from_parts_rejects_inconsistent_flips() {
        let good = TritFlips::between(&[0, 1], &[1, 1]).unwrap();
        let m = *good.transitions();
        let flip = |position, old, new| TritFlip { position, old, new };
        assert!(TritFlips::from_parts(m, vec![flip(0, 0, 1)]).is_ok());
        assert!(matches!(
            TritFlips::from_parts(m, vec![]),
            Err(FlipError::TransitionCountMismatch {
                old: 0,
                new: 1,
                matrix: 1,
                listed: 0
            })
        ));
        assert!(matches!(
            TritFlips::from_parts(m, vec![flip(2, 0, 1)]),
            Err(FlipError::PositionOutOfRange {
                position: 2,
                len: 2
            })
        ));
        assert!(matches!(
            TritFlips::from_parts(m, vec![flip(0, 1, 1)]),
            Err(FlipError::NotAFlip { .. })
        ));
        let two = TritFlips::between(&[0, 0], &[1, 1]).unwrap();
        assert!(matches!(
            TritFlips::from_parts(*two.transitions(), vec![flip(1, 0, 1), flip(0, 0, 1)]),
            Err(FlipError::PositionsNotIncreasing {
                previous: 1,
                position: 0
            })
        ));
    }
}
