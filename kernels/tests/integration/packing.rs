//! Lossless round trips for every packing, and rejection of malformed buffers.

use proptest::prelude::*;
use tritlab_kernels::pack::{
    hf_pack, hf_unpack, i2_len, pack_i2, pack_t1, t1_len, unpack_i2, unpack_t1,
};
use tritlab_kernels::{Packing, QuantizedActivations, TernaryMatrix, WeightScale};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn i2_round_trip(t in prop::collection::vec(-1i8..=1, 0..1000)) {
        let packed = pack_i2(&t).unwrap();
        prop_assert_eq!(packed.len(), i2_len(t.len()));
        prop_assert_eq!(unpack_i2(&packed, t.len()).unwrap(), t);
    }

    #[test]
    fn t1_round_trip(t in prop::collection::vec(-1i8..=1, 0..1000)) {
        let packed = pack_t1(&t).unwrap();
        prop_assert_eq!(packed.len(), t1_len(t.len()));
        // Every byte is a T1 byte (13 of the 256 values are none).
        prop_assert!(packed.iter().all(|&b| unpack_t1(&[b], 5).is_ok()));
        prop_assert_eq!(unpack_t1(&packed, t.len()).unwrap(), t);
    }

    #[test]
    fn hf_round_trip((rows, cols, t) in (1usize..40, 1usize..50).prop_flat_map(|(r, c)| (Just(r), Just(c), prop::collection::vec(-1i8..=1, r * c)))) {
        let packed = hf_pack(&t, rows, cols).unwrap();
        prop_assert_eq!(packed.len(), rows.div_ceil(4) * cols);
        prop_assert_eq!(hf_unpack(&packed, rows, cols).unwrap(), t.clone());
        // And through the kernel layout, once, as a model load does.
        let m = TernaryMatrix::from_hf_packed(&packed, rows, cols, WeightScale::PerTensor(1.0)).unwrap();
        prop_assert_eq!(m.to_trits(), t.clone());
        prop_assert_eq!(m.trit_counts(), tritlab_kernels::count_trits(&t).unwrap());
        prop_assert_eq!(m.to_hf_packed(), packed.clone());
        let t1 = m.repack(Packing::T1).unwrap();
        prop_assert_eq!(t1.packing(), Packing::T1);
        prop_assert_eq!(t1.to_trits(), t.clone());
        prop_assert_eq!(t1.trit_counts(), tritlab_kernels::count_trits(&t).unwrap());
        prop_assert_eq!(t1.to_hf_packed(), packed);
        prop_assert_eq!(t1.repack(Packing::I2).unwrap().to_trits(), t);
    }

    #[test]
    fn t1_matrix_product_equals_i2((rows, cols, t) in (1usize..30, 1usize..1000).prop_flat_map(|(r, c)| (Just(r), Just(c), prop::collection::vec(-1i8..=1, r * c))), tokens in 1usize..7, seed in any::<u32>()) {
        let x: Vec<f32> = (0..tokens * cols).map(|i| ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) % 1000) as f32 / 100.0 - 5.0).collect();
        let q = QuantizedActivations::quantize(&x, tokens, cols).unwrap();
        let i2 = TernaryMatrix::from_trits(&t, rows, cols, WeightScale::PerTensor(0.7)).unwrap();
        let t1 = TernaryMatrix::from_trits_packed(&t, rows, cols, WeightScale::PerTensor(0.7), Packing::T1).unwrap();
        let mut a = vec![0.0; rows * tokens];
        i2.matmul(&q, &mut a).unwrap();
        // Every T1 path (the table, and byte permutes where the CPU has them), for one token and
        // for several, equals I2 bit for bit: both sum exact integers and scale them once.
        for backend in tritlab_kernels::Backend::supported() {
            let mut b = vec![f32::NAN; rows * tokens];
            t1.matmul_with(backend, &q, &mut b).unwrap();
            prop_assert_eq!(&a, &b, "T1 on {}", backend);
        }
        // And in a shared pass with I2 matrices (q, k and v of mixed packings).
        let q1 = QuantizedActivations::quantize(&x[..cols], 1, cols).unwrap();
        let (mut y1, mut y2, mut y3) = (vec![0.0; rows], vec![0.0; rows], vec![0.0; rows]);
        TernaryMatrix::matmul_many(&[&t1, &i2, &t1], &q1, &mut [&mut y1, &mut y2, &mut y3]).unwrap();
        prop_assert_eq!(&y1, &a[..rows]);
        prop_assert_eq!(&y2, &a[..rows]);
        prop_assert_eq!(&y3, &a[..rows]);
    }
}

#[test]
fn malformed_buffers_are_errors() {
    assert!(pack_i2(&[0, 1, 2]).is_err());
    assert!(unpack_i2(&[0x55], 5).is_err());
    assert!(unpack_i2(&[0xff], 4).is_err()); // code 3
    assert!(unpack_t1(&[0, 0], 3).is_err());
    assert!(hf_unpack(&[0x55; 7], 8, 4).is_err());
    assert!(hf_unpack(&[0xff; 4], 4, 4).is_err());
    assert!(hf_unpack(&[], 0, 4).is_err());
    assert!(hf_pack(&[0; 7], 2, 4).is_err());
}

#[test]
fn t1_matches_i2_on_many_rows_and_tokens() {
    // Rows past one 64-row output chunk and past several parallel tasks, columns with a short
    // last chunk (1283 = 4·320 + 3), and more tokens than one tile of four (or of sixteen, on
    // AMX), against I2 on the scalar reference.
    let (rows, cols) = (300, 1283);
    let t: Vec<i8> = (0..rows * cols)
        .map(|i| ((i * 7 + i / 5) % 3) as i8 - 1)
        .collect();
    let i2 = TernaryMatrix::from_trits(&t, rows, cols, WeightScale::PerTensor(0.3)).unwrap();
    let t1 = i2.repack(Packing::T1).unwrap();
    assert!(t1.packed_bytes() < i2.packed_bytes());
    for tokens in [9, 40] {
        let x: Vec<f32> = (0..tokens * cols)
            .map(|i| ((i * 37) % 255) as f32 - 127.0)
            .collect();
        let q = QuantizedActivations::quantize(&x, tokens, cols).unwrap();
        let mut a = vec![0.0; rows * tokens];
        i2.matmul_with(tritlab_kernels::Backend::Scalar, &q, &mut a)
            .unwrap();
        for backend in tritlab_kernels::Backend::supported() {
            let mut b = vec![f32::NAN; rows * tokens];
            t1.matmul_with(backend, &q, &mut b).unwrap();
            assert_eq!(a, b, "T1 on {backend}, {tokens} tokens");
        }
    }
}

#[test]
fn t1_refuses_per_group_scales() {
    let t = vec![1i8; 2 * 128];
    let scale = WeightScale::PerGroup {
        group_size: 128,
        scales: vec![1.0, 2.0],
    };
    let err = TernaryMatrix::from_trits_packed(&t, 2, 128, scale, Packing::T1).unwrap_err();
    assert!(err.to_string().contains("per-group"), "{err}");
    assert_eq!("T1".parse::<Packing>().unwrap(), Packing::T1);
    assert!("i3".parse::<Packing>().is_err());
}
