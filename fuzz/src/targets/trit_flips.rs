//! Trit-flip application (`host/morphism/src/flips.rs`).
//!
//! Input: two trit tensors (each byte mod 3, minus 1; the first byte splits the input), then the
//! same bytes read as an arbitrary flip list checked by `TritFlips::from_parts`.
//!
//! Properties: `between(a, b)` applied forward to `a` gives `b` and backward gives `a` again; its
//! transition matrix counts both tensors' trits; `from_parts` accepts exactly the parts of a real
//! `between` and rejects inconsistent ones; applying to a wrong tensor fails and leaves the
//! tensor unchanged.

use tritlab_morphism::{TransitionMatrix, TritFlip, TritFlips, TRITS};

fn trits(bytes: &[u8]) -> Vec<i8> {
    bytes.iter().map(|b| (b % 3) as i8 - 1).collect()
}

fn count(tensor: &[i8], t: i8) -> u64 {
    tensor.iter().filter(|&&x| x == t).count() as u64
}

pub fn run(data: &[u8]) {
    let Some((&head, rest)) = data.split_first() else {
        return;
    };
    let n = rest.len() / 2;
    let before = trits(&rest[..n]);
    // Mostly small differences: a byte of `head` picks how often the after tensor copies before.
    let after: Vec<i8> = trits(&rest[n..2 * n])
        .into_iter()
        .zip(&before)
        .enumerate()
        .map(|(i, (a, &b))| {
            if (i as u8).wrapping_mul(31) % 8 < head % 8 {
                b
            } else {
                a
            }
        })
        .collect();

    let flips = TritFlips::between(&before, &after).expect("two trit tensors of one length");
    assert_eq!(flips.len(), n as u64);
    let changed = before.iter().zip(&after).filter(|(a, b)| a != b).count();
    assert_eq!(flips.flips().len(), changed);
    assert_eq!(flips.transitions().changed(), changed as u64);
    let cb = flips.counts_before();
    let ca = flips.counts_after();
    assert_eq!(
        (cb.neg, cb.zero, cb.pos),
        (count(&before, -1), count(&before, 0), count(&before, 1))
    );
    assert_eq!(
        (ca.neg, ca.zero, ca.pos),
        (count(&after, -1), count(&after, 0), count(&after, 1))
    );
    let gf3 = |t: &[i8]| t.iter().map(|&x| i64::from(x)).sum::<i64>().rem_euclid(3) as u8;
    assert_eq!(flips.gf3_before(), gf3(&before));
    assert_eq!(flips.gf3_after(), gf3(&after));

    let mut tensor = before.clone();
    flips.apply_forward(&mut tensor).unwrap();
    assert_eq!(tensor, after, "forward does not give the after tensor");
    flips.apply_backward(&mut tensor).unwrap();
    assert_eq!(tensor, before, "forward then backward is not the identity");

    // The parts of a real diff are accepted as they are.
    let rebuilt = TritFlips::from_parts(*flips.transitions(), flips.flips().to_vec())
        .expect("from_parts accepts the parts of between");
    assert_eq!(rebuilt, flips);

    // Applied to the wrong tensor, flips fail and change nothing.
    if changed > 0 {
        let mut wrong = after.clone();
        if wrong != before {
            let snapshot = wrong.clone();
            assert!(flips.apply_forward(&mut wrong).is_err());
            assert_eq!(wrong, snapshot, "a failed apply changed the tensor");
        }
    }

    // Arbitrary parts: a matrix from the head bytes and flips from the rest.
    let mut counts = [[0u64; 3]; 3];
    for (i, chunk) in rest.chunks(2).take(9).enumerate() {
        counts[i / 3][i % 3] = u64::from(chunk[0] % 8);
    }
    let list: Vec<TritFlip> = rest
        .chunks_exact(3)
        .map(|c| TritFlip {
            position: u64::from(c[0] % 32),
            old: (c[1] % 4) as i8 - 1,
            new: (c[2] % 4) as i8 - 1,
        })
        .collect();
    let matrix = matrix_from(counts);
    if let Ok(flips) = TritFlips::from_parts(matrix, list.clone()) {
        // Accepted parts keep every invariant replay relies on.
        let positions: Vec<u64> = flips.flips().iter().map(|f| f.position).collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]));
        assert!(positions.iter().all(|&p| p < flips.len()));
        for old in TRITS {
            for new in TRITS {
                if old != new {
                    let listed = list.iter().filter(|f| f.old == old && f.new == new).count();
                    assert_eq!(flips.transitions().get(old, new), listed as u64);
                }
            }
        }
        let mut tensor = vec![0i8; flips.len() as usize];
        for f in flips.flips() {
            tensor[f.position as usize] = f.old;
        }
        let start = tensor.clone();
        flips.apply_forward(&mut tensor).unwrap();
        flips.apply_backward(&mut tensor).unwrap();
        assert_eq!(tensor, start);
    }
}

/// A transition matrix with the given counts, built through the public API: the diff of two
/// tensors laid out cell by cell.
fn matrix_from(counts: [[u64; 3]; 3]) -> TransitionMatrix {
    let (mut before, mut after) = (Vec::new(), Vec::new());
    for (i, row) in counts.iter().enumerate() {
        for (j, &n) in row.iter().enumerate() {
            for _ in 0..n {
                before.push(TRITS[i]);
                after.push(TRITS[j]);
            }
        }
    }
    *TritFlips::between(&before, &after).unwrap().transitions()
}
