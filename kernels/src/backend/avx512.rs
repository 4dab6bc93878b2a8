//! AVX-512 with VNNI: `vpdpbusd` multiplies unsigned codes (trit + 1) by signed activations and
//! accumulates four products per i32 lane in one instruction; Σ trit·q = Σ code·q − Σ q.
//!
//! A 64-byte load covers two 32-byte blocks (256 columns). The activations are read in *pair
//! order* (see `matrix::to_pair_order`), so the 64 values that meet bit pair `i` of both blocks
//! are one contiguous load. An odd final block runs on 256-bit vectors (AVX-512VL).

use super::TokenView;
use crate::matrix::BLOCK_BYTES;
use std::arch::x86_64::*;

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn codes512(ptr: *const u8) -> [__m512i; 4] {
    let mask = _mm512_set1_epi8(3);
    let w = _mm512_loadu_si512(ptr as *const __m512i);
    [
        _mm512_and_si512(w, mask),
        _mm512_and_si512(_mm512_srli_epi16::<2>(w), mask),
        _mm512_and_si512(_mm512_srli_epi16::<4>(w), mask),
        _mm512_and_si512(_mm512_srli_epi16::<6>(w), mask),
    ]
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn xs512(ptr: *const i8) -> [__m512i; 4] {
    let p = ptr as *const __m512i;
    [
        _mm512_loadu_si512(p),
        _mm512_loadu_si512(p.add(1)),
        _mm512_loadu_si512(p.add(2)),
        _mm512_loadu_si512(p.add(3)),
    ]
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
fn dp512(acc: __m512i, c: &[__m512i; 4], x: &[__m512i; 4]) -> __m512i {
    let acc = _mm512_dpbusd_epi32(acc, c[0], x[0]);
    let acc = _mm512_dpbusd_epi32(acc, c[1], x[1]);
    let acc = _mm512_dpbusd_epi32(acc, c[2], x[2]);
    _mm512_dpbusd_epi32(acc, c[3], x[3])
}

/// Σ code·q of one 32-byte block on 256-bit vectors; `x` in natural order.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn block256(codes: *const u8, x: *const i8) -> __m256i {
    let mask = _mm256_set1_epi8(3);
    let w = _mm256_loadu_si256(codes as *const __m256i);
    let xp = x as *const __m256i;
    let mut acc = _mm256_setzero_si256();
    acc = _mm256_dpbusd_epi32(acc, _mm256_and_si256(w, mask), _mm256_loadu_si256(xp));
    acc = _mm256_dpbusd_epi32(
        acc,
        _mm256_and_si256(_mm256_srli_epi16::<2>(w), mask),
        _mm256_loadu_si256(xp.add(1)),
    );
    acc = _mm256_dpbusd_epi32(
        acc,
        _mm256_and_si256(_mm256_srli_epi16::<4>(w), mask),
        _mm256_loadu_si256(xp.add(2)),
    );
    _mm256_dpbusd_epi32(
        acc,
        _mm256_and_si256(_mm256_srli_epi16::<6>(w), mask),
        _mm256_loadu_si256(xp.add(3)),
    )
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
fn hsum256(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
    _mm_cvtsi128_si32(s)
}

/// A tile of `R` rows × `T` tokens; `x` pointers are in pair order. Returns Σ code·q.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn tile<const R: usize, const T: usize>(
    w: [*const u8; R],
    x: [*const i8; T],
    blocks: usize,
) -> [[i32; T]; R] {
    let mut acc = [[_mm512_setzero_si512(); T]; R];
    let pairs = blocks / 2;
    for p in 0..pairs {
        for r in 0..R {
            let c = codes512(w[r].add(p * 2 * BLOCK_BYTES));
            for t in 0..T {
                let xv = xs512(x[t].add(p * 256));
                acc[r][t] = dp512(acc[r][t], &c, &xv);
            }
        }
    }
    let mut out = [[0i32; T]; R];
    for r in 0..R {
        for t in 0..T {
            out[r][t] = _mm512_reduce_add_epi32(acc[r][t]);
            if blocks % 2 == 1 {
                // Pair order leaves an odd final block in natural order.
                let tail = block256(w[r].add(pairs * 2 * BLOCK_BYTES), x[t].add(pairs * 256));
                out[r][t] += hsum256(tail);
            }
        }
    }
    out
}

/// One token against `R` rows; `x` in pair order. Returns Σ code·q per row.
///
/// Decoding must out-run memory, or loads and arithmetic take turns instead of overlapping. The
/// shift-and-mask unpack of [`codes512`] puts three shifts next to the four `vpdpbusd` on the
/// one port that runs both, which capped this loop near one DRAM channel's rate. Here each bit
/// pair is isolated by a mask *in place* (`w & 0x0c` is code·4): the ANDs run on another port,
/// and accumulator `i` collects 4^i · Σ code·q, which an arithmetic shift divides exactly at the
/// end (every lane is a sum of multiples of 4^i). Lanes stay far below 2^31: each adds at most
/// 4·(2·64)·128 per 256 columns, so rows up to 2^20 columns are safe (`TernaryMatrix` refuses
/// wider ones).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn gemv_tile<const R: usize>(
    w: [*const u8; R],
    x: *const i8,
    blocks: usize,
    prefetch: usize,
) -> [i32; R] {
    let masks = [
        _mm512_set1_epi8(0x03),
        _mm512_set1_epi8(0x0c),
        _mm512_set1_epi8(0x30),
        _mm512_set1_epi8(0xc0u8 as i8),
    ];
    let mut acc = [[_mm512_setzero_si512(); 4]; R];
    let pairs = blocks / 2;
    for p in 0..pairs {
        let xv = xs512(x.add(p * 256));
        for r in 0..R {
            let ptr = w[r].add(p * 2 * BLOCK_BYTES);
            // Each row is streamed once from memory: ask for its bytes `prefetch` ahead so the
            // loads find them in cache. `wrapping_add`: the hint may point past the matrix,
            // which a prefetch tolerates and a pointer `add` would not.
            _mm_prefetch::<_MM_HINT_T0>(ptr.wrapping_add(prefetch) as *const i8);
            let v = _mm512_loadu_si512(ptr as *const __m512i);
            for i in 0..4 {
                acc[r][i] = _mm512_dpbusd_epi32(acc[r][i], _mm512_and_si512(v, masks[i]), xv[i]);
            }
        }
    }
    let mut out = [0i32; R];
    for r in 0..R {
        let sum = _mm512_add_epi32(
            _mm512_add_epi32(acc[r][0], _mm512_srai_epi32::<2>(acc[r][1])),
            _mm512_add_epi32(
                _mm512_srai_epi32::<4>(acc[r][2]),
                _mm512_srai_epi32::<6>(acc[r][3]),
            ),
        );
        out[r] = _mm512_reduce_add_epi32(sum);
        if blocks % 2 == 1 {
            // Pair order leaves an odd final block in natural order.
            out[r] += hsum256(block256(
                w[r].add(pairs * 2 * BLOCK_BYTES),
                x.add(pairs * 256),
            ));
        }
    }
    out
}

macro_rules! run_gemv_tile {
    ($R:literal, $rows:expr, $stride:expr, $r:expr, $token:expr, $prefetch:expr, $out:expr) => {{
        let w: [*const u8; $R] = std::array::from_fn(|i| $rows.as_ptr().add(($r + i) * $stride));
        let res = gemv_tile::<$R>(w, $token.pairs.as_ptr(), $stride / BLOCK_BYTES, $prefetch);
        for i in 0..$R {
            $out[$r + i] = res[i] - $token.sum;
        }
    }};
}

macro_rules! run_tile {
    ($R:literal, $T:literal, $rows:expr, $stride:expr, $r:expr, $tokens:expr, $t:expr, $out:expr) => {{
        let w: [*const u8; $R] = std::array::from_fn(|i| $rows.as_ptr().add(($r + i) * $stride));
        let x: [*const i8; $T] = std::array::from_fn(|j| $tokens[$t + j].pairs.as_ptr());
        let res = tile::<$R, $T>(w, x, $stride / BLOCK_BYTES);
        for i in 0..$R {
            for j in 0..$T {
                $out[($r + i) * $tokens.len() + $t + j] = res[i][j] - $tokens[$t + j].sum;
            }
        }
    }};
}

/// # Safety
/// The CPU must support AVX-512 F/BW/VL/VNNI; shapes as documented on [`super::dots`].
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
pub(crate) unsafe fn dots(
    rows: &[u8],
    stride: usize,
    tokens: &[TokenView],
    out: &mut [i32],
    stream: crate::tune::Setting,
) {
    let nrows = rows.len() / stride;
    let ntok = tokens.len();
    if ntok == 1 {
        let prefetch = stream.prefetch;
        let token = &tokens[0];
        let mut r = 0;
        // One row at a time reads the rows as one sequential stream ([`crate::tune`]).
        let four = stream.rows == 4;
        while four && r + 4 <= nrows {
            run_gemv_tile!(4, rows, stride, r, token, prefetch, out);
            r += 4;
        }
        while r < nrows {
            run_gemv_tile!(1, rows, stride, r, token, prefetch, out);
            r += 1;
        }
        return;
    }
    // Cache blocking: a band of rows (≤ 32 KiB of codes) meets one group of four tokens at a
    // time, so both stay in L1 while every pair of rows in the band passes them. Going row pair
    // by row pair over *all* tokens instead re-streamed every token's activations from L2 for
    // each pair of rows (160 KB per pair at 64 tokens × 2560 columns).
    let band = ((32 << 10) / stride).clamp(2, 64) & !1;
    let mut r0 = 0;
    while r0 < nrows {
        let r1 = (r0 + band).min(nrows);
        let mut t = 0;
        while t < ntok {
            let four = ntok - t >= 4;
            let mut r = r0;
            while r < r1 {
                let two = r1 - r >= 2;
                match (two, four) {
                    (true, true) => run_tile!(2, 4, rows, stride, r, tokens, t, out),
                    (false, true) => run_tile!(1, 4, rows, stride, r, tokens, t, out),
                    (true, false) => run_tile!(2, 1, rows, stride, r, tokens, t, out),
                    (false, false) => run_tile!(1, 1, rows, stride, r, tokens, t, out),
                }
                r += if two { 2 } else { 1 };
            }
            t += if four { 4 } else { 1 };
        }
        r0 = r1;
    }
}

/// # Safety
/// The CPU must support AVX-512 F/BW/VL/VNNI; shapes as documented on [`super::block_dots`].
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
pub(crate) unsafe fn block_dots(rows: &[u8], stride: usize, token: &TokenView, out: &mut [i32]) {
    let blocks = stride / BLOCK_BYTES;
    for (r, row) in rows.chunks_exact(stride).enumerate() {
        for b in 0..blocks {
            let acc = block256(
                row.as_ptr().add(b * BLOCK_BYTES),
                token.natural.as_ptr().add(b * 128),
            );
            out[r * blocks + b] = hsum256(acc) - token.block_sums[b];
        }
    }
}
