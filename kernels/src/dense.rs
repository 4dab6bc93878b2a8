//! Dense float dot products: the output projection and attention of the transformer around the
//! ternary layers.
//!
//! Both products add in one fixed order on every CPU (independent lanes, no FMA, a fixed
//! reduction tree), so logits are bit-identical across machines, SIMD paths and thread counts;
//! the SIMD paths are the same body compiled with wider vectors.
//!
//! f16 matrices (the token embedding of a GGUF file, and so its tied output head) add in the same
//! order. Widening f16 to f32 is exact, but the compiler cannot vectorise it from plain Rust, so
//! [`dot_f16`], [`widen_f16`], [`gemv_f16`] and [`gemm_f16`] convert with F16C's `vcvtph2ps` on
//! AVX-512 and AVX2, and with [`f16_to_f32`] elsewhere (AArch64's half-precision vector types are
//! not stable Rust yet, so it runs the scalar path, as it does for the bf16 product). A product
//! from an f16 matrix is therefore bit-identical to the f32 product of the widened matrix, on
//! every path.

/// Elements per dot-product step: independent accumulators, so the compiler can vectorise
/// without reassociating (and every machine adds in the same order). 64 lanes are 8 AVX2 or 4
/// AVX-512 registers: enough independent add chains to hide the adds' latency.
const LANES: usize = 64;

/// A bf16 value widened to f32 (exact).
#[inline(always)]
pub fn bf16_to_f32(b: u16) -> f32 {
    f32::from_bits((b as u32) << 16)
}

#[inline(always)]
fn reduce_lanes(acc: [f32; LANES]) -> f32 {
    let mut a = acc;
    let mut n = LANES;
    while n > 1 {
        n /= 2;
        for j in 0..n {
            a[j] += a[j + n];
        }
    }
    a[0]
}

/// A read hint; never faults, whatever the address.
#[inline(always)]
fn prefetch(ptr: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetch is a hint that never dereferences or faults.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(ptr.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = ptr;
}

#[inline(always)]
fn dot_bf16_body(w: &[u16], x: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let (wc, wt) = w.split_at(w.len() / LANES * LANES);
    let (xc, xt) = x.split_at(wc.len());
    for (wb, xb) in wc.chunks_exact(LANES).zip(xc.chunks_exact(LANES)) {
        // The output projection is the largest matrix a decode step streams: ask for its bytes
        // 8 KiB ahead, as the ternary kernels do, so loads overlap the arithmetic.
        prefetch(wb.as_ptr().cast::<u8>().wrapping_add(8192));
        prefetch(wb.as_ptr().cast::<u8>().wrapping_add(8192 + 64));
        for j in 0..LANES {
            acc[j] += bf16_to_f32(wb[j]) * xb[j];
        }
    }
    for (j, (&wv, &xv)) in wt.iter().zip(xt).enumerate() {
        acc[j] += bf16_to_f32(wv) * xv;
    }
    reduce_lanes(acc)
}

#[inline(always)]
fn dot_f32_body(w: &[f32], x: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let (wc, wt) = w.split_at(w.len() / LANES * LANES);
    let (xc, xt) = x.split_at(wc.len());
    for (wb, xb) in wc.chunks_exact(LANES).zip(xc.chunks_exact(LANES)) {
        for j in 0..LANES {
            acc[j] += wb[j] * xb[j];
        }
    }
    for (j, (&wv, &xv)) in wt.iter().zip(xt).enumerate() {
        acc[j] += wv * xv;
    }
    reduce_lanes(acc)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn dot_bf16_avx512(w: &[u16], x: &[f32]) -> f32 {
    dot_bf16_body(w, x)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn dot_bf16_avx2(w: &[u16], x: &[f32]) -> f32 {
    dot_bf16_body(w, x)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn dot_f32_avx2(w: &[f32], x: &[f32]) -> f32 {
    dot_f32_body(w, x)
}

/// `Σ bf16(w)·x` with f32 accumulation. Same operations in the same order on every CPU (no FMA),
/// so logits are bit-identical across machines and thread counts.
pub fn dot_bf16(w: &[u16], x: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: AVX-512F support was just checked.
        return unsafe { dot_bf16_avx512(w, x) };
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 support was just checked.
        return unsafe { dot_bf16_avx2(w, x) };
    }
    dot_bf16_body(w, x)
}

/// `Σ w·x` in f32, in the same fixed order as [`dot_bf16`].
pub fn dot_f32(w: &[f32], x: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 support was just checked.
        return unsafe { dot_f32_avx2(w, x) };
    }
    dot_f32_body(w, x)
}

/// An IEEE half-precision value widened to f32 (exact; a NaN stays a NaN, made quiet as F16C
/// makes it).
#[inline]
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h & 0x8000) << 16;
    let exp = u32::from((h >> 10) & 0x1f);
    let man = u32::from(h & 0x3ff);
    let bits = match (exp, man) {
        (0, 0) => sign,
        (0, m) => {
            // Subnormal m·2⁻²⁴: shift the leading one up to bit 10, where a normal value's
            // implicit bit is, and lower the exponent by as much.
            let shift = m.leading_zeros() - 21;
            sign | ((113 - shift) << 23) | (((m << shift) & 0x3ff) << 13)
        }
        (31, 0) => sign | 0x7f80_0000,
        (31, m) => sign | 0x7fc0_0000 | (m << 13),
        (e, m) => sign | ((e + 112) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

/// The portable f16 dot product: [`dot_f32`]'s lanes and reduction, on widened weights.
#[inline(always)]
fn dot_f16_body(w: &[u16], x: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let (wc, wt) = w.split_at(w.len() / LANES * LANES);
    let (xc, xt) = x.split_at(wc.len());
    for (wb, xb) in wc.chunks_exact(LANES).zip(xc.chunks_exact(LANES)) {
        for j in 0..LANES {
            acc[j] += f16_to_f32(wb[j]) * xb[j];
        }
    }
    for (j, (&wv, &xv)) in wt.iter().zip(xt).enumerate() {
        acc[j] += f16_to_f32(wv) * xv;
    }
    reduce_lanes(acc)
}

/// `Σ f16(w)·x` with f32 accumulation, added in [`dot_f32`]'s order (no FMA), so the result is
/// bit-identical to `dot_f32` of the widened weights on every CPU. Panics if the lengths differ
/// (a caller's bug: the engine checks shapes when it loads a model).
pub fn dot_f16(w: &[u16], x: &[f32]) -> f32 {
    assert_eq!(
        w.len(),
        x.len(),
        "dot_f16: weights and input differ in length"
    );
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: AVX-512F support was just checked; the lengths are equal (asserted above).
        return unsafe { f16_x86::dot_avx512(w, x) };
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("f16c") {
        // SAFETY: AVX2 and F16C support were just checked; the lengths are equal.
        return unsafe { f16_x86::dot_avx2(w, x) };
    }
    dot_f16_body(w, x)
}

/// Widens f16 values into `out` (exact). Panics if the lengths differ.
pub fn widen_f16(src: &[u16], out: &mut [f32]) {
    assert_eq!(
        src.len(),
        out.len(),
        "widen_f16: source and output differ in length"
    );
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: AVX-512F support was just checked; the lengths are equal (asserted above).
        return unsafe { f16_x86::widen_avx512(src, out) };
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("f16c") {
        // SAFETY: F16C (and the AVX it implies) was just checked; the lengths are equal.
        return unsafe { f16_x86::widen_f16c(src, out) };
    }
    for (o, &h) in out.iter_mut().zip(src) {
        *o = f16_to_f32(h);
    }
}

/// The one-token product of a row-major f16 matrix: `out[r] = Σ_c f16(w[r·cols + c])·x[c]` for
/// the `out.len()` rows `w` holds, each row added as [`dot_f16`] adds.
///
/// Panics unless `x` is `cols` long and `w` holds exactly `out.len()` rows of `cols`.
pub fn gemv_f16(w: &[u16], cols: usize, x: &[f32], out: &mut [f32]) {
    assert_eq!(x.len(), cols, "gemv_f16: the input is not one row long");
    assert_eq!(
        Some(w.len()),
        out.len().checked_mul(cols),
        "gemv_f16: the matrix does not hold one row per output"
    );
    if cols == 0 {
        out.fill(0.0);
        return;
    }
    for (row, o) in w.chunks_exact(cols).zip(out.iter_mut()) {
        *o = dot_f16(row, x);
    }
}

/// The many-token product: `out[t·n + r] = Σ_c f16(w[r·cols + c])·x[t·cols + c]` for the
/// `n = out.len() / tokens` rows `w` holds and `tokens` rows of `x` (`out` is `[tokens][n]`).
/// Each weight row is widened once (exactly) and multiplied by every token with [`dot_f32`], so
/// row `t` of the result is bit-identical to [`gemv_f16`] of `x[t]`.
///
/// Panics unless `x` is `tokens × cols` and `w` holds `n` rows of `cols`.
pub fn gemm_f16(w: &[u16], cols: usize, x: &[f32], tokens: usize, out: &mut [f32]) {
    assert_eq!(
        Some(x.len()),
        tokens.checked_mul(cols),
        "gemm_f16: the input is not `tokens` rows long"
    );
    assert!(
        tokens > 0 && out.len().is_multiple_of(tokens),
        "gemm_f16: the output is not `tokens` rows"
    );
    let n = out.len() / tokens;
    assert_eq!(
        Some(w.len()),
        n.checked_mul(cols),
        "gemm_f16: the matrix does not hold one row per output"
    );
    if cols == 0 {
        out.fill(0.0);
        return;
    }
    let mut wrow = vec![0.0f32; cols];
    for (i, row) in w.chunks_exact(cols).enumerate() {
        widen_f16(row, &mut wrow);
        for (t, xt) in x.chunks_exact(cols).enumerate() {
            out[t * n + i] = dot_f32(&wrow, xt);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod f16_x86 {
    //! F16C conversions in [`super::dot_f32`]'s order: the 64 lanes are four 16-wide (AVX-512)
    //! or eight 8-wide (AVX2) registers, each a multiply then an add as the portable body does;
    //! the registers are stored back to the 64 lanes for the tail and the shared reduction.

    use super::{f16_to_f32, prefetch, reduce_lanes, LANES};
    use std::arch::x86_64::*;

    /// # Safety
    /// AVX-512F, and `w.len() == x.len()` (asserted by the caller).
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn dot_avx512(w: &[u16], x: &[f32]) -> f32 {
        let full = w.len() / LANES * LANES;
        let (wp, xp) = (w.as_ptr(), x.as_ptr());
        let mut acc = [_mm512_setzero_ps(); LANES / 16];
        let mut c = 0;
        while c < full {
            // As in the bf16 product: ask for the weights 8 KiB ahead.
            prefetch(wp.add(c).cast::<u8>().wrapping_add(8192));
            prefetch(wp.add(c).cast::<u8>().wrapping_add(8192 + 64));
            for (k, a) in acc.iter_mut().enumerate() {
                let h = _mm256_loadu_si256(wp.add(c + 16 * k).cast());
                let p = _mm512_mul_ps(_mm512_cvtph_ps(h), _mm512_loadu_ps(xp.add(c + 16 * k)));
                *a = _mm512_add_ps(*a, p);
            }
            c += LANES;
        }
        let mut lanes = [0.0f32; LANES];
        for (k, a) in acc.iter().enumerate() {
            _mm512_storeu_ps(lanes.as_mut_ptr().add(16 * k), *a);
        }
        for (j, (&wv, &xv)) in w[full..].iter().zip(&x[full..]).enumerate() {
            lanes[j] += f16_to_f32(wv) * xv;
        }
        reduce_lanes(lanes)
    }

    /// # Safety
    /// AVX2 and F16C, and `w.len() == x.len()` (asserted by the caller).
    #[target_feature(enable = "avx2,f16c")]
    pub(super) unsafe fn dot_avx2(w: &[u16], x: &[f32]) -> f32 {
        let full = w.len() / LANES * LANES;
        let (wp, xp) = (w.as_ptr(), x.as_ptr());
        let mut acc = [_mm256_setzero_ps(); LANES / 8];
        let mut c = 0;
        while c < full {
            prefetch(wp.add(c).cast::<u8>().wrapping_add(8192));
            prefetch(wp.add(c).cast::<u8>().wrapping_add(8192 + 64));
            for (k, a) in acc.iter_mut().enumerate() {
                let h = _mm_loadu_si128(wp.add(c + 8 * k).cast());
                let p = _mm256_mul_ps(_mm256_cvtph_ps(h), _mm256_loadu_ps(xp.add(c + 8 * k)));
                *a = _mm256_add_ps(*a, p);
            }
            c += LANES;
        }
        let mut lanes = [0.0f32; LANES];
        for (k, a) in acc.iter().enumerate() {
            _mm256_storeu_ps(lanes.as_mut_ptr().add(8 * k), *a);
        }
        for (j, (&wv, &xv)) in w[full..].iter().zip(&x[full..]).enumerate() {
            lanes[j] += f16_to_f32(wv) * xv;
        }
        reduce_lanes(lanes)
    }

    /// # Safety
    /// AVX-512F, and `src.len() == out.len()` (asserted by the caller).
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn widen_avx512(src: &[u16], out: &mut [f32]) {
        let full = src.len() / 16 * 16;
        let mut i = 0;
        while i < full {
            let h = _mm256_loadu_si256(src.as_ptr().add(i).cast());
            _mm512_storeu_ps(out.as_mut_ptr().add(i), _mm512_cvtph_ps(h));
            i += 16;
        }
        for (o, &h) in out[full..].iter_mut().zip(&src[full..]) {
            *o = f16_to_f32(h);
        }
    }

    /// # Safety
    /// F16C, and `src.len() == out.len()` (asserted by the caller).
    #[target_feature(enable = "avx,f16c")]
    pub(super) unsafe fn widen_f16c(src: &[u16], out: &mut [f32]) {
        let full = src.len() / 8 * 8;
        let mut i = 0;
        while i < full {
            let h = _mm_loadu_si128(src.as_ptr().add(i).cast());
            _mm256_storeu_ps(out.as_mut_ptr().add(i), _mm256_cvtph_ps(h));
            i += 8;
        }
        for (o, &h) in out[full..].iter_mut().zip(&src[full..]) {
            *o = f16_to_f32(h);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// f16 `h` by its definition, in f64 (every f16 is exactly an f64 and an f32).
    fn f16_by_definition(h: u16) -> f64 {
        let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
        let (e, m) = (i32::from((h >> 10) & 0x1f), f64::from(h & 0x3ff));
        sign * match e {
            0 => m * 2f64.powi(-24),
            31 if m == 0.0 => f64::INFINITY,
            31 => f64::NAN,
            _ => (1024.0 + m) * 2f64.powi(e - 25),
        }
    }

    #[test]
    fn f16_widens_exactly_on_every_path() {
        let all: Vec<u16> = (0..=u16::MAX).collect();
        let mut widened = vec![0.0f32; all.len()];
        widen_f16(&all, &mut widened);
        for (&h, &w) in all.iter().zip(&widened) {
            let want = f16_by_definition(h);
            let scalar = f16_to_f32(h);
            if want.is_nan() {
                assert!(scalar.is_nan() && w.is_nan(), "{h:#06x}");
                // F16C quiets a signalling NaN and keeps sign and payload; so does the scalar.
                assert_eq!(scalar.to_bits(), w.to_bits(), "{h:#06x}");
            } else {
                assert_eq!(scalar as f64, want, "{h:#06x}");
                assert_eq!(scalar.to_bits(), w.to_bits(), "{h:#06x}");
            }
        }
        // Odd lengths take the scalar tail.
        let mut tail = vec![0.0f32; 21];
        widen_f16(&all[1000..1021], &mut tail);
        assert_eq!(tail, widened[1000..1021].to_vec());
    }

    fn reference(w: &[f32], x: &[f32]) -> f32 {
        // The same lanes and reduction as the kernels, written plainly.
        let mut acc = [0.0f32; LANES];
        for (i, (a, b)) in w.iter().zip(x).enumerate() {
            let lane = if i < w.len() / LANES * LANES {
                i % LANES
            } else {
                i - w.len() / LANES * LANES
            };
            acc[lane] += a * b;
        }
        reduce_lanes(acc)
    }

    proptest! {
        #[test]
        fn every_path_adds_in_the_reference_order(
            pairs in proptest::collection::vec((-1e3f32..1e3, -1e3f32..1e3), 0..700)
        ) {
            let w: Vec<f32> = pairs.iter().map(|p| p.0).collect();
            let x: Vec<f32> = pairs.iter().map(|p| p.1).collect();
            prop_assert_eq!(dot_f32(&w, &x).to_bits(), reference(&w, &x).to_bits());
            prop_assert_eq!(dot_f32_body(&w, &x).to_bits(), reference(&w, &x).to_bits());
            let b: Vec<u16> = w.iter().map(|v| (v.to_bits() >> 16) as u16).collect();
            let widened: Vec<f32> = b.iter().map(|&v| bf16_to_f32(v)).collect();
            prop_assert_eq!(dot_bf16(&b, &x).to_bits(), reference(&widened, &x).to_bits());
        }

        /// The f16 product on every path this CPU has equals the f32 product of the widened
        /// weights bit for bit (finite weights: subnormals, zeros of both signs, up to 65504).
        #[test]
        fn f16_products_equal_the_f32_product_of_the_widened_weights(
            pairs in proptest::collection::vec(
                ((0u16..0x7c00).prop_union(0x8000u16..0xfc00), -1e3f32..1e3),
                0..700,
            )
        ) {
            let h: Vec<u16> = pairs.iter().map(|p| p.0).collect();
            let x: Vec<f32> = pairs.iter().map(|p| p.1).collect();
            let widened: Vec<f32> = h.iter().map(|&v| f16_to_f32(v)).collect();
            let want = reference(&widened, &x).to_bits();
            prop_assert_eq!(want, dot_f32(&widened, &x).to_bits());
            prop_assert_eq!(dot_f16(&h, &x).to_bits(), want);
            prop_assert_eq!(dot_f16_body(&h, &x).to_bits(), want);
            #[cfg(target_arch = "x86_64")]
            {
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: AVX-512F was just checked; the lengths are equal.
                    prop_assert_eq!(unsafe { f16_x86::dot_avx512(&h, &x) }.to_bits(), want);
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("f16c")
                {
                    // SAFETY: AVX2 and F16C were just checked; the lengths are equal.
                    prop_assert_eq!(unsafe { f16_x86::dot_avx2(&h, &x) }.to_bits(), want);
                    let mut out = vec![0.0f32; h.len()];
                    // SAFETY: F16C was just checked; the lengths are equal.
                    unsafe { f16_x86::widen_f16c(&h, &mut out) };
                    prop_assert_eq!(&out, &widened);
                }
            }
        }

        /// GEMV and GEMM of an f16 matrix: every row as `dot_f32` of the widened row, and each
        /// token's row of the GEMM equal to the GEMV of that token.
        #[test]
        fn f16_gemv_and_gemm_match_the_widened_matrix(
            rows in 0usize..9,
            cols in 1usize..150,
            tokens in 1usize..4,
            seed in any::<u64>(),
        ) {
            let mut s = seed | 1;
            let mut next = move || {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                s
            };
            // Finite f16 bit patterns, both signs.
            let w: Vec<u16> = (0..rows * cols)
                .map(|_| (next() % 0x7c00) as u16 | (next() as u16 & 0x8000))
                .collect();
            let x: Vec<f32> = (0..tokens * cols)
                .map(|_| (next() % 2001) as f32 / 1000.0 - 1.0)
                .collect();
            let wide: Vec<f32> = w.iter().map(|&v| f16_to_f32(v)).collect();
            let mut gemm = vec![0.0f32; tokens * rows];
            gemm_f16(&w, cols, &x, tokens, &mut gemm);
            for t in 0..tokens {
                let xt = &x[t * cols..(t + 1) * cols];
                let mut gemv = vec![0.0f32; rows];
                gemv_f16(&w, cols, xt, &mut gemv);
                for r in 0..rows {
                    let want = dot_f32(&wide[r * cols..(r + 1) * cols], xt).to_bits();
                    prop_assert_eq!(gemv[r].to_bits(), want);
                    prop_assert_eq!(gemm[t * rows + r].to_bits(), want);
                }
            }
        }
    }

    #[test]
    #[should_panic(expected = "does not hold one row per output")]
    fn f16_gemv_checks_its_shapes() {
        gemv_f16(&[0u16; 10], 4, &[0.0; 4], &mut [0.0; 2]);
    }
}
