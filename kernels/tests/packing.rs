//! Lossless round trips for every packing, and rejection of malformed buffers.

use proptest::prelude::*;
use tritlab_kernels::pack::{
    hf_pack, hf_unpack, i2_len, pack_i2, pack_t1, t1_len, unpack_i2, unpack_t1,
};
use tritlab_kernels::{T1Matrix, TernaryMatrix, WeightScale};

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
        prop_assert!(packed.iter().all(|&b| b < 243));
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
        prop_assert_eq!(m.to_hf_packed(), packed);
        let t1 = T1Matrix::from_trits(&t, rows, cols, 1.0).unwrap();
        prop_assert_eq!(t1.to_trits().unwrap(), t);
    }

    #[test]
    fn t1_matrix_product_equals_i2((rows, cols, t) in (1usize..30, 1usize..1000).prop_flat_map(|(r, c)| (Just(r), Just(c), prop::collection::vec(-1i8..=1, r * c))), seed in any::<u32>()) {
        let x: Vec<f32> = (0..cols).map(|i| ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) % 1000) as f32 / 100.0 - 5.0).collect();
        let q = tritlab_kernels::QuantizedActivations::quantize(&x, 1, cols).unwrap();
        let i2 = TernaryMatrix::from_trits(&t, rows, cols, WeightScale::PerTensor(0.7)).unwrap();
        let t1 = T1Matrix::from_trits(&t, rows, cols, 0.7).unwrap();
        let mut a = vec![0.0; rows];
        i2.matmul(&q, &mut a).unwrap();
        // Every T1 path (the table, and byte permutes where the CPU has them) equals I2.
        for backend in tritlab_kernels::Backend::supported() {
            let mut b = vec![f32::NAN; rows];
            t1.matmul_with(backend, &q, &mut b).unwrap();
            prop_assert_eq!(&a, &b, "T1 on {}", backend);
        }
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
