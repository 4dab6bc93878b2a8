//! Property tests: flips replay exactly in both directions, agree with the kernels' counts and
//! GF(3) sums, and survive the byte encoding.

use proptest::collection::vec;
use proptest::prelude::*;
use tritlab_kernels::trit::count_trits;
use tritlab_morphism::{
    decode_payload, encode_payload, ContentHash, LayerMorphism, StepRecord, TritFlips, TRITS,
};

/// A tensor before a step and after it, where each weight is redrawn with probability ~`1/3`
/// (so runs of unchanged weights, and of changes, both occur).
fn before_after(max_len: usize) -> impl Strategy<Value = (Vec<i8>, Vec<i8>)> {
    (0..=max_len).prop_flat_map(|len| {
        (
            vec(-1i8..=1, len),
            vec(-1i8..=1, len),
            vec(prop::bool::weighted(0.3), len),
        )
            .prop_map(|(before, redrawn, changes)| {
                let after = before
                    .iter()
                    .zip(&redrawn)
                    .zip(&changes)
                    .map(|((&b, &r), &change)| if change { r } else { b })
                    .collect();
                (before, after)
            })
    })
}

fn gf3_by_definition(trits: &[i8]) -> u8 {
    let sum: i64 = trits.iter().map(|&t| i64::from(t)).sum();
    sum.rem_euclid(3) as u8
}

proptest! {
    #[test]
    fn flips_replay_forward_and_backward((before, after) in before_after(600)) {
        let flips = TritFlips::between(&before, &after).unwrap();
        let mut world = before.clone();
        flips.apply_forward(&mut world).unwrap();
        prop_assert_eq!(&world, &after);
        flips.apply_backward(&mut world).unwrap();
        prop_assert_eq!(&world, &before);
    }

    #[test]
    fn transitions_and_counts_agree_with_the_kernels((before, after) in before_after(600)) {
        let flips = TritFlips::between(&before, &after).unwrap();
        let m = flips.transitions();
        prop_assert_eq!(m.total(), before.len() as u64);
        for old in TRITS {
            for new in TRITS {
                let expected = before
                    .iter()
                    .zip(&after)
                    .filter(|&(&b, &a)| b == old && a == new)
                    .count() as u64;
                prop_assert_eq!(m.get(old, new), expected);
            }
        }
        let changed = before.iter().zip(&after).filter(|(b, a)| b != a).count();
        prop_assert_eq!(flips.flips().len(), changed);
        prop_assert_eq!(m.changed(), changed as u64);
        let kernel_before = count_trits(&before).unwrap();
        let kernel_after = count_trits(&after).unwrap();
        prop_assert_eq!(flips.counts_before(), kernel_before);
        prop_assert_eq!(flips.counts_after(), kernel_after);
        prop_assert_eq!(flips.gf3_before(), kernel_before.gf3_sum());
        prop_assert_eq!(flips.gf3_after(), kernel_after.gf3_sum());
        prop_assert_eq!(flips.gf3_before(), gf3_by_definition(&before));
        prop_assert_eq!(flips.gf3_after(), gf3_by_definition(&after));
        prop_assert!(flips.gf3_before() <= 2 && flips.gf3_after() <= 2);
    }

    #[test]
    fn applying_to_the_wrong_world_fails_and_changes_nothing(
        (before, after) in before_after(200),
        poke in any::<prop::sample::Index>(),
    ) {
        let flips = TritFlips::between(&before, &after).unwrap();
        prop_assume!(!flips.flips().is_empty());
        // Break the world at one flipped position: forward must refuse, leaving it untouched.
        let flip = flips.flips()[poke.index(flips.flips().len())];
        let mut world = before.clone();
        world[flip.position as usize] = flip.new;
        let untouched = world.clone();
        prop_assert!(flips.apply_forward(&mut world).is_err());
        prop_assert_eq!(&world, &untouched);
        let mut shorter = before[1..].to_vec();
        prop_assert!(flips.apply_forward(&mut shorter).is_err());
        prop_assert!(flips.apply_backward(&mut before.clone()).is_err());
    }

    #[test]
    fn records_round_trip_through_the_encoding(
        step in any::<u64>(),
        scalars in (any::<f64>(), any::<f64>(), any::<f64>()).prop_filter("NaN never equals itself", |(a, b, c)| !a.is_nan() && !b.is_nan() && !c.is_nan()),
        batch_position in any::<u64>(),
        hashes in any::<([u8; 32], [u8; 32], [u8; 32])>(),
        rng_state in vec(any::<u8>(), 0..40),
        layers in vec(("[a-z.0-9é]{0,24}", before_after(300), any::<(f32, f32)>()), 0..4),
    ) {
        let layers = layers
            .into_iter()
            .map(|(name, (before, after), (s0, s1))| {
                // Compare scales by bits so NaN scales round-trip too.
                let (s0, s1) = (if s0.is_nan() { 0.0 } else { s0 }, if s1.is_nan() { 0.0 } else { s1 });
                LayerMorphism::between(name, &before, s0, &after, s1).unwrap()
            })
            .collect();
        let record = StepRecord {
            step,
            learning_rate: scalars.0,
            loss: scalars.1,
            grad_norm: scalars.2,
            batch_hash: ContentHash(hashes.0),
            batch_position,
            rng_state,
            world_before: ContentHash(hashes.1),
            world_after: ContentHash(hashes.2),
            layers,
        };
        let payload = encode_payload(&record);
        prop_assert_eq!(decode_payload(&payload).unwrap(), record);
        // Every strict prefix is rejected, never decoded as something else.
        for cut in [0, payload.len() / 2, payload.len().saturating_sub(1)] {
            if cut < payload.len() {
                prop_assert!(decode_payload(&payload[..cut]).is_err());
            }
        }
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in vec(any::<u8>(), 0..400)) {
        let _ = decode_payload(&bytes);
    }
}

#[test]
fn sparse_flips_encode_compactly() {
    // 1 flip in 1000 on a 100k-trit tensor: positions cost ~2 bytes, codes half a byte.
    let before = vec![0i8; 100_000];
    let mut after = before.clone();
    for position in (0..after.len()).step_by(1000) {
        after[position] = 1;
    }
    let layer = LayerMorphism::between("w", &before, 1.0, &after, 1.0).unwrap();
    let record = StepRecord {
        layers: vec![layer],
        ..StepRecord::default()
    };
    let payload = encode_payload(&record);
    assert!(
        payload.len() < 100 * 2 + 50 + 200,
        "{} bytes",
        payload.len()
    );
}
