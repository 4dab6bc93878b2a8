//! Dense products on AMX tiles (Intel Sapphire Rapids and later), for the backward pass of
//! quantisation-aware training and its output head.
//!
//! Training multiplies f32 values (gradients, the head's inputs) by matrices that are exact in
//! bf16 (trits, int8 activation codes) or by other f32 matrices. AMX multiplies pairs of bf16
//! values into f32 accumulators at sixteen times the rate of AVX-512 f32 FMAs. A bf16 value is
//! 8 significant bits, an f32 has 24, so three of them ([`Part::Hi`], [`Part::Mid`],
//! [`Part::Lo`]: the value rounded to bf16, then what is left, rounded, then the rest) add up to
//! any normal f32 exactly:
//!
//! - **One exact operand** (`G · trits`, `Gᵀ · codes`): `g·t = hi·t + mid·t + lo·t` and each of
//!   the three products is exact, so the result is the f32 product with only the order of the
//!   f32 additions changed ([`EXACT_SPLIT`]).
//! - **Two f32 operands** (the output head): `hi·hi + hi·mid + mid·hi` ([`BF16X3_SPLIT`]), an
//!   error of about 2⁻¹⁸ of each product (bf16 alone: 2⁻⁹), or the six products down to 2⁻¹⁶
//!   ([`F32_SPLIT`]), an error near f32 rounding for twice the work.
//!
//! Additions run in AMX's fixed order (per 32-deep step, pairs accumulated into f32 with round
//! to nearest even; denormal inputs and outputs flushed to zero), so a product is deterministic
//! on every AMX CPU and for every thread count (each output element is summed by one tile, in
//! the same order, whichever thread runs it). It is not bit-identical to a product computed in
//! any other order, which is why a training run records that it used this path.
//!
//! The matrices are cut into bf16 parts once per product ("packing"), the right-hand one into
//! panels of 16 columns in the pair-interleaved layout `tdpbf16ps` reads; the product runs over
//! blocks of the output that, with their slices of both operands, stay in the L2 cache.

use crate::error::{KernelError, Result};
use rayon::prelude::*;
use std::sync::{Mutex, OnceLock};

/// Which bf16 part of a value a term of the product uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The value itself, for values exact in bf16 (trits, int8 codes): the same bits as `Hi`.
    Whole,
    /// The value rounded to 8 significant bits.
    Hi,
    /// What `Hi` left out, rounded to 8 significant bits.
    Mid,
    /// What `Hi + Mid` left out (exact).
    Lo,
}

/// `f32 · exact`: the three parts of the left operand against the whole right one. Every
/// product is exact.
pub const EXACT_SPLIT: [(Part, Part); 3] = [
    (Part::Hi, Part::Whole),
    (Part::Mid, Part::Whole),
    (Part::Lo, Part::Whole),
];

/// `f32 · f32`, fast: `hi·hi + hi·mid + mid·hi`, which leaves out terms of about 2⁻¹⁸ of the
/// product (bf16 alone: 2⁻⁹), for half of [`F32_SPLIT`]'s work.
pub const BF16X3_SPLIT: [(Part, Part); 3] = [
    (Part::Hi, Part::Hi),
    (Part::Hi, Part::Mid),
    (Part::Mid, Part::Hi),
];

/// `f32 · f32`: the six part products of weight 2⁰, 2⁻⁸ and 2⁻¹⁶, an error near f32 rounding.
pub const F32_SPLIT: [(Part, Part); 6] = [
    (Part::Hi, Part::Hi),
    (Part::Hi, Part::Mid),
    (Part::Mid, Part::Hi),
    (Part::Hi, Part::Lo),
    (Part::Mid, Part::Mid),
    (Part::Lo, Part::Hi),
];

/// Values of an operand.
#[derive(Debug, Clone, Copy)]
pub enum Values<'a> {
    F32(&'a [f32]),
    /// Small integers (trits, int8 codes): exact in bf16.
    I8(&'a [i8]),
}

impl Values<'_> {
    fn len(&self) -> usize {
        match self {
            Values::F32(v) => v.len(),
            Values::I8(v) => v.len(),
        }
    }

    #[cfg(test)]
    fn get(&self, i: usize) -> f32 {
        match self {
            Values::F32(v) => v[i],
            Values::I8(v) => f32::from(v[i]),
        }
    }
}

/// One operand of `C = A · Bᵀ`: logically `[rows, depth]`, the depth being the dimension summed
/// over. It is stored row-major as `[rows, depth]`, or, when `transposed`, as `[depth, rows]`
/// (the operand is then the transpose of the stored matrix, read without copying it first).
#[derive(Debug, Clone, Copy)]
pub struct Operand<'a> {
    pub values: Values<'a>,
    pub rows: usize,
    pub depth: usize,
    pub transposed: bool,
}

impl<'a> Operand<'a> {
    pub fn new(values: Values<'a>, rows: usize, depth: usize) -> Self {
        Operand {
            values,
            rows,
            depth,
            transposed: false,
        }
    }

    /// The transpose of a row-major `[depth, rows]` matrix.
    pub fn transposed(values: Values<'a>, rows: usize, depth: usize) -> Self {
        Operand {
            values,
            rows,
            depth,
            transposed: true,
        }
    }

    fn check(&self, what: &'static str) -> Result<()> {
        let expected = self
            .rows
            .checked_mul(self.depth)
            .ok_or(KernelError::Shape {
                what,
                rows: self.rows,
                cols: self.depth,
                reason: "too many elements",
            })?;
        if self.values.len() != expected {
            return Err(KernelError::Length {
                what,
                expected,
                actual: self.values.len(),
            });
        }
        Ok(())
    }
}

/// Large buffers kept for the next use: a training step allocates the same large buffers every
/// step, and fresh ones of hundreds of MB cost a page fault per 4 KiB (on the small preset's
/// output head, as much time as the product itself), reused ones a `memset`.
pub struct BufferPool<T> {
    free: Mutex<Vec<Vec<T>>>,
    keep: usize,
}

impl<T: Copy + Default> BufferPool<T> {
    /// A pool that keeps at most `keep` buffers (the largest).
    pub const fn new(keep: usize) -> Self {
        BufferPool {
            free: Mutex::new(Vec::new()),
            keep,
        }
    }

    /// `len` default values, in a buffer reused from the pool when one is large enough.
    pub fn take(&self, len: usize) -> Vec<T> {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        let fit = free
            .iter()
            .enumerate()
            .filter(|(_, b)| b.capacity() >= len)
            .min_by_key(|(_, b)| b.capacity())
            .map(|(i, _)| i);
        match fit {
            Some(i) => {
                let mut b = free.swap_remove(i);
                drop(free);
                b.clear();
                b.resize(len, T::default());
                b
            }
            None => vec![T::default(); len],
        }
    }

    /// Returns buffers to the pool, which keeps the largest.
    pub fn give(&self, buffers: impl IntoIterator<Item = Vec<T>>) {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        free.extend(buffers);
        free.sort_by_key(|b| std::cmp::Reverse(b.capacity()));
        free.truncate(self.keep);
    }

    /// Drops the kept buffers.
    pub fn clear(&self) {
        self.free.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

/// The packed operands of the last products.
static PACKED: BufferPool<u16> = BufferPool::new(12);

const TILE: usize = 16;
/// Output rows and columns one step of the inner kernel computes (2 × 2 tiles).
const STEP: usize = 32;
/// Depth (bf16 elements) one tile covers.
const TILE_DEPTH: usize = 32;
/// Depth of one cache block: the slices of both operands for one output block stay in L2.
const BLOCK_DEPTH: usize = 128;

/// Whether this CPU and operating system run AMX bf16 products. The first call asks Linux for
/// permission to use the tile registers (`arch_prctl(ARCH_REQ_XCOMP_PERM)`), once per process.
pub fn available() -> bool {
    tiles_permitted() && has_feature(AMX_BF16)
}

/// Whether this CPU and operating system run AMX int8 products (`tdpbusd`), which the ternary
/// products of several tokens use (see `backend::amx`).
pub fn int8_available() -> bool {
    tiles_permitted() && has_feature(AMX_INT8)
}

/// CPUID leaf 7, EDX: AMX-BF16 and AMX-INT8 (the tiles themselves are bit 24).
const AMX_BF16: u32 = 1 << 22;
const AMX_INT8: u32 = 1 << 25;

#[cfg(target_arch = "x86_64")]
fn has_feature(bit: u32) -> bool {
    std::arch::x86_64::__cpuid_count(7, 0).edx & bit != 0
}

#[cfg(not(target_arch = "x86_64"))]
fn has_feature(_: u32) -> bool {
    false
}

/// Whether the CPU has tiles and Linux lets this process use them; asked once per process.
fn tiles_permitted() -> bool {
    static PERMITTED: OnceLock<bool> = OnceLock::new();
    *PERMITTED.get_or_init(detect)
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn detect() -> bool {
    // CPUID leaf 7: EDX bit 24 AMX-TILE.
    if !has_feature(1 << 24) {
        return false;
    }
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;
    // SAFETY: a plain system call with integer arguments; it changes only this process's
    // permission to use the tile state.
    let granted = unsafe {
        libc::syscall(
            libc::SYS_arch_prctl,
            ARCH_REQ_XCOMP_PERM,
            XFEATURE_XTILEDATA,
        )
    };
    granted == 0
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
fn detect() -> bool {
    false
}

/// `C = Σ_terms part_a(A) · part_b(B)ᵀ`: `C` is `[a.rows, b.rows]`, row-major, overwritten.
///
/// # Errors
/// No AMX on this machine, operands whose depths or lengths do not match, an output of the
/// wrong length, no terms, or a `Mid`/`Lo` part asked of an integer operand (which has none).
pub fn matmul_nt(a: &Operand, b: &Operand, terms: &[(Part, Part)], c: &mut [f32]) -> Result<()> {
    if !available() {
        return Err(KernelError::Unsupported("amx-bf16"));
    }
    a.check("left operand")?;
    b.check("right operand")?;
    if a.depth != b.depth {
        return Err(KernelError::Shape {
            what: "right operand",
            rows: b.rows,
            cols: b.depth,
            reason: "its depth differs from the left operand's",
        });
    }
    let outputs = a.rows.checked_mul(b.rows).ok_or(KernelError::Shape {
        what: "product output",
        rows: a.rows,
        cols: b.rows,
        reason: "too many elements",
    })?;
    if c.len() != outputs {
        return Err(KernelError::Length {
            what: "product output",
            expected: outputs,
            actual: c.len(),
        });
    }
    if terms.is_empty() {
        return Err(KernelError::Shape {
            what: "product terms",
            rows: 0,
            cols: 0,
            reason: "a product needs at least one term",
        });
    }
    for (operand, part) in terms.iter().flat_map(|&(pa, pb)| [(a, pa), (b, pb)]) {
        if matches!(operand.values, Values::I8(_)) && matches!(part, Part::Mid | Part::Lo) {
            return Err(KernelError::Shape {
                what: "product terms",
                rows: operand.rows,
                cols: operand.depth,
                reason: "an integer operand has no Mid or Lo part",
            });
        }
    }
    if a.rows == 0 || b.rows == 0 {
        return Ok(());
    }
    if a.depth == 0 {
        c.fill(0.0);
        return Ok(());
    }
    let depth = a.depth.next_multiple_of(TILE_DEPTH);
    // Each distinct part is cut once, however many terms use it, in one pass over the operand.
    let parts_of = |side: usize| -> Vec<Part> {
        let mut out: Vec<Part> = Vec::new();
        for t in terms {
            let p = canonical(if side == 0 { t.0 } else { t.1 });
            if !out.contains(&p) {
                out.push(p);
            }
        }
        out
    };
    let (a_parts, b_parts) = (parts_of(0), parts_of(1));
    let packed_a = pack_rows(a, &a_parts, depth);
    let packed_b = pack_panels(b, &b_parts, depth);
    let pairs: Vec<(&[u16], &[u16])> = terms
        .iter()
        .map(|&(pa, pb)| {
            let ia = a_parts
                .iter()
                .position(|&p| p == canonical(pa))
                .unwrap_or(0);
            let ib = b_parts
                .iter()
                .position(|&p| p == canonical(pb))
                .unwrap_or(0);
            (packed_a[ia].as_slice(), packed_b[ib].as_slice())
        })
        .collect();
    product(&pairs, a.rows, b.rows, depth, c);
    drop(pairs);
    PACKED.give(packed_a.into_iter().chain(packed_b));
    Ok(())
}

fn canonical(p: Part) -> Part {
    if p == Part::Whole {
        Part::Hi
    } else {
        p
    }
}

/// `v` rounded to bf16 (to nearest, ties to even), as f32 bits.
#[inline(always)]
fn round_bf16(v: f32) -> u32 {
    let b = v.to_bits();
    b.wrapping_add(0x7fff + ((b >> 16) & 1)) & 0xffff_0000
}

/// The bf16 bits of `v`'s three parts, `[Hi, Mid, Lo]`, each the rest rounded to nearest: the
/// parts add up to `v` exactly (for normal values: each rest has at most 16, then 8,
/// significant bits), and `Hi + Mid` is within 2⁻¹⁷ of `v`.
#[inline(always)]
fn cut(v: f32) -> [u16; 3] {
    let hi = round_bf16(v);
    let rest = v - f32::from_bits(hi);
    let mid = round_bf16(rest);
    let lo = (rest - f32::from_bits(mid)).to_bits();
    [(hi >> 16) as u16, (mid >> 16) as u16, (lo >> 16) as u16]
}

/// Where a part sits in [`cut`]'s result.
fn part_index(p: Part) -> usize {
    match p {
        Part::Whole | Part::Hi => 0,
        Part::Mid => 1,
        Part::Lo => 2,
    }
}

/// The bf16 bits of one part of `v`.
#[cfg(test)]
fn part_bits(v: f32, p: Part) -> u16 {
    cut(v)[part_index(p)]
}

/// Width of depth block `kb` of a left operand packed with depth `depth`.
fn block_width(kb: usize, depth: usize) -> usize {
    BLOCK_DEPTH.min(depth - kb * BLOCK_DEPTH)
}

/// Element access of an operand's values, monomorphised so the packing loops stay tight.
trait Source: Copy + Send + Sync {
    fn at(self, i: usize) -> f32;
    /// Part `part` (an index into [`cut`]'s result) of `out.len()` values from `start` on.
    fn cut_run(self, start: usize, part: usize, out: &mut [u16]);
}

impl Source for &[f32] {
    #[inline(always)]
    fn at(self, i: usize) -> f32 {
        self[i]
    }

    fn cut_run(self, start: usize, part: usize, out: &mut [u16]) {
        let src = &self[start..start + out.len()];
        for (o, &v) in out.iter_mut().zip(src) {
            *o = cut(v)[part];
        }
    }
}

impl Source for &[i8] {
    #[inline(always)]
    fn at(self, i: usize) -> f32 {
        f32::from(self[i])
    }

    fn cut_run(self, start: usize, part: usize, out: &mut [u16]) {
        let src = &self[start..start + out.len()];
        for (o, &v) in out.iter_mut().zip(src) {
            *o = cut(f32::from(v))[part];
        }
    }
}

/// Hands a task its `N` output slices (one per part) as an array.
fn parts_array<const N: usize>(dst: Vec<&mut [u16]>) -> [&mut [u16]; N] {
    dst.try_into()
        .unwrap_or_else(|_| unreachable!("one slice per part"))
}

/// Splits every part's buffer the same way and regroups the pieces by task.
fn tasks_of<'b>(
    out: &'b mut [Vec<u16>],
    mut split: impl FnMut(&'b mut [u16]) -> Vec<&'b mut [u16]>,
) -> Vec<Vec<&'b mut [u16]>> {
    let mut tasks: Vec<Vec<&mut [u16]>> = Vec::new();
    for buf in out.iter_mut() {
        for (t, piece) in split(buf).into_iter().enumerate() {
            if tasks.len() <= t {
                tasks.push(Vec::new());
            }
            tasks[t].push(piece);
        }
    }
    tasks
}

/// The left operand's parts, each depth-blocked: block `kb` (depth `512·kb ..`) is a
/// row-major `[rows↑32, width]` bf16 matrix, so that one output block's slice of the operand is
/// contiguous and a transposed operand is read in long runs (zero padding).
fn pack_rows(a: &Operand, parts: &[Part], depth: usize) -> Vec<Vec<u16>> {
    match (a.values, parts.len()) {
        (Values::F32(v), 1) => pack_rows_from::<_, 1>(v, a, parts, depth),
        (Values::F32(v), 2) => pack_rows_from::<_, 2>(v, a, parts, depth),
        (Values::F32(v), _) => pack_rows_from::<_, 3>(v, a, parts, depth),
        (Values::I8(v), _) => pack_rows_from::<_, 1>(v, a, parts, depth),
    }
}

/// Rows of the left operand one packing task cuts.
const ROW_CHUNK: usize = 128;

fn pack_rows_from<S: Source, const N: usize>(
    src: S,
    a: &Operand,
    parts: &[Part],
    depth: usize,
) -> Vec<Vec<u16>> {
    let rows = a.rows.next_multiple_of(STEP);
    let mut out: Vec<Vec<u16>> = parts.iter().map(|_| PACKED.take(rows * depth)).collect();
    let index: [usize; N] = std::array::from_fn(|j| part_index(parts[j]));
    let chunks = rows.div_ceil(ROW_CHUNK);
    let blocks = depth.div_ceil(BLOCK_DEPTH);
    // Tasks: (depth block, 128 rows), each a contiguous piece of every part.
    let tasks = tasks_of(&mut out, |buf| {
        let mut pieces = Vec::new();
        let mut rest = buf;
        for kb in 0..blocks {
            let w = block_width(kb, depth);
            let (block, tail) = rest.split_at_mut(rows * w);
            rest = tail;
            pieces.extend(block.chunks_mut(ROW_CHUNK * w));
        }
        pieces
    });
    tasks.into_par_iter().enumerate().for_each(|(t, dst)| {
        let dst = parts_array::<N>(dst);
        let (kb, chunk) = (t / chunks, t % chunks);
        let w = block_width(kb, depth);
        let r0 = chunk * ROW_CHUNK;
        let n = ROW_CHUNK.min(a.rows.saturating_sub(r0));
        let k0 = kb * BLOCK_DEPTH;
        let k1 = (k0 + w).min(a.depth);
        if a.transposed {
            // Stored [depth, rows]: runs of `n` consecutive rows at each depth index.
            for k in k0..k1 {
                let base = k * a.rows + r0;
                for i in 0..n {
                    let bits = cut(src.at(base + i));
                    for j in 0..N {
                        dst[j][i * w + k - k0] = bits[index[j]];
                    }
                }
            }
        } else {
            // Row-major: each part of a row's run in one pass of its own (vectorised).
            for i in 0..n {
                let base = (r0 + i) * a.depth + k0;
                for j in 0..N {
                    src.cut_run(base, index[j], &mut dst[j][i * w..i * w + (k1 - k0)]);
                }
            }
        }
    });
    out
}

/// The right operand's parts in panels of 16 rows (output columns): panel `q`, pair `kk` holds
/// for each of its 16 rows `j` the two values at depth `2kk` and `2kk + 1`, which is the
/// layout of a `tdpbf16ps` right-hand tile (16 pairs of depth per 64-byte tile row).
fn pack_panels(b: &Operand, parts: &[Part], depth: usize) -> Vec<Vec<u16>> {
    match (b.values, parts.len()) {
        (Values::F32(v), 1) => pack_panels_from::<_, 1>(v, b, parts, depth),
        (Values::F32(v), 2) => pack_panels_from::<_, 2>(v, b, parts, depth),
        (Values::F32(v), _) => pack_panels_from::<_, 3>(v, b, parts, depth),
        (Values::I8(v), _) => pack_panels_from::<_, 1>(v, b, parts, depth),
    }
}

/// Panels one packing task fills (512 rows of the right operand).
const PANEL_GROUP: usize = 32;

fn pack_panels_from<S: Source, const N: usize>(
    src: S,
    b: &Operand,
    parts: &[Part],
    depth: usize,
) -> Vec<Vec<u16>> {
    let rows = b.rows.next_multiple_of(STEP);
    let panel = depth * TILE; // u16s per panel
    let mut out: Vec<Vec<u16>> = parts.iter().map(|_| PACKED.take(rows * depth)).collect();
    let index: [usize; N] = std::array::from_fn(|j| part_index(parts[j]));
    let tasks = tasks_of(&mut out, |buf| {
        buf.chunks_mut(PANEL_GROUP * panel).collect()
    });
    tasks.into_par_iter().enumerate().for_each(|(g, dst)| {
        let dst = parts_array::<N>(dst);
        let r0 = g * PANEL_GROUP * TILE;
        let n = (PANEL_GROUP * TILE).min(b.rows.saturating_sub(r0));
        let at =
            |i: usize, k: usize| (i / TILE) * panel + (k / 2) * 2 * TILE + 2 * (i % TILE) + k % 2;
        if b.transposed {
            // Stored [depth, rows]: each depth index gives a run of the group's rows.
            for k in 0..b.depth {
                let base = k * b.rows + r0;
                for i in 0..n {
                    let bits = cut(src.at(base + i));
                    for j in 0..N {
                        dst[j][at(i, k)] = bits[index[j]];
                    }
                }
            }
        } else {
            for i in 0..n {
                let base = (r0 + i) * b.depth;
                for k in 0..b.depth {
                    let bits = cut(src.at(base + k));
                    for j in 0..N {
                        dst[j][at(i, k)] = bits[index[j]];
                    }
                }
            }
        }
    });
    out
}

/// A raw output pointer shared by tasks that write disjoint blocks.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: every task writes only its own block of the output (see `product`).
unsafe impl Send for OutPtr {}
// SAFETY: as above.
unsafe impl Sync for OutPtr {}

/// Output block sides (multiples of 32) for a product of `rows × cols` outputs.
fn block_sides(rows: usize, cols: usize) -> (usize, usize) {
    // Left slices of 256 rows and right slices of up to 512 columns, each `BLOCK_DEPTH` deep,
    // are 256 KiB and 512 KiB of bf16; the block's f32 accumulators at most 512 KiB.
    let mb = 256.min(rows.next_multiple_of(STEP));
    let nb = 512.min(cols.next_multiple_of(STEP));
    (mb, nb)
}

fn product(pairs: &[(&[u16], &[u16])], rows: usize, cols: usize, depth: usize, c: &mut [f32]) {
    let (mb, nb) = block_sides(rows, cols);
    let blocks: Vec<(usize, usize)> = (0..rows.div_ceil(mb))
        .flat_map(|i| (0..cols.div_ceil(nb)).map(move |j| (i * mb, j * nb)))
        .collect();
    let out = OutPtr(c.as_mut_ptr());
    blocks.into_par_iter().for_each(|(m0, n0)| {
        let m = mb.min(rows - m0);
        let n = nb.min(cols - n0);
        let (mp, np) = (m.next_multiple_of(STEP), n.next_multiple_of(STEP));
        let mut acc = vec![0.0f32; mp * np];
        // SAFETY: `available()` was checked by the caller; the packed operands hold
        // `rows↑32 × depth` and `cols↑32 × depth` values, which bound every tile read.
        unsafe {
            block(
                pairs,
                rows.next_multiple_of(STEP),
                (m0, n0),
                (mp, np),
                depth,
                &mut acc,
            )
        };
        for i in 0..m {
            // SAFETY: rows m0..m0+m and columns n0..n0+n are this task's alone, inside `c`.
            let dst =
                unsafe { std::slice::from_raw_parts_mut({ out }.0.add((m0 + i) * cols + n0), n) };
            dst.copy_from_slice(&acc[i * np..i * np + n]);
        }
    });
}

#[cfg(target_arch = "x86_64")]
#[repr(C, align(64))]
pub(crate) struct TileConfig(pub(crate) [u8; 64]);

/// Palette 1, tiles 0–7 of 16 rows × 64 bytes: 0–3 accumulate, 4–5 hold the left operand,
/// 6–7 the right (the int8 products of `backend::amx` use the same shapes).
#[cfg(target_arch = "x86_64")]
pub(crate) static CONFIG: TileConfig = {
    let mut c = [0u8; 64];
    c[0] = 1;
    let mut t = 0;
    while t < 8 {
        c[16 + 2 * t] = 64;
        c[48 + t] = TILE as u8;
        t += 1;
    }
    TileConfig(c)
};

/// One output block `[mp, np]` (multiples of 32) starting at `(m0, n0)`, accumulated into `acc`.
///
/// # Safety
/// AMX must be available and permitted; each `pairs` entry holds a left operand packed by
/// [`pack_rows`] with `a_rows ≥ m0 + mp` rows and right panels of at least `(n0 + np) × depth`
/// bf16 values.
#[cfg(target_arch = "x86_64")]
unsafe fn block(
    pairs: &[(&[u16], &[u16])],
    a_rows: usize,
    (m0, n0): (usize, usize),
    (mp, np): (usize, usize),
    depth: usize,
    acc: &mut [f32],
) {
    use std::arch::asm;
    asm!("ldtilecfg [{}]", in(reg) CONFIG.0.as_ptr(), options(nostack, readonly));
    let c_stride = np * 4;
    let panel = depth * TILE;
    // Depth blocks outermost, so the block's slices of both operands stay in L2 while every
    // 32 × 32 piece of the output passes; the terms innermost, so each piece's accumulators
    // are loaded and stored once per depth block, not once per term.
    for k0 in (0..depth).step_by(BLOCK_DEPTH) {
        let k1 = (k0 + BLOCK_DEPTH).min(depth);
        // Depth block k0 / 512 of the left operand is `[a_rows, w]`.
        let w = k1 - k0;
        let a_stride = w * 2;
        for nj in (0..np).step_by(STEP) {
            for mi in (0..mp).step_by(STEP) {
                let c00 = acc.as_mut_ptr().add(mi * np + nj);
                let c01 = c00.add(TILE);
                let c10 = c00.add(TILE * np);
                let c11 = c10.add(TILE);
                asm!(
                    "tileloadd tmm0, [{c00} + {s}*1]",
                    "tileloadd tmm1, [{c01} + {s}*1]",
                    "tileloadd tmm2, [{c10} + {s}*1]",
                    "tileloadd tmm3, [{c11} + {s}*1]",
                    c00 = in(reg) c00, c01 = in(reg) c01, c10 = in(reg) c10,
                    c11 = in(reg) c11, s = in(reg) c_stride,
                    options(nostack, readonly),
                );
                for &(a, b) in pairs {
                    let a0 = a.as_ptr().add(k0 * a_rows + (m0 + mi) * w);
                    let a1 = a0.add(TILE * w);
                    let b0 = b.as_ptr().add((n0 + nj) / TILE * panel + k0 * TILE);
                    let b1 = b0.add(panel);
                    for k in (0..w).step_by(TILE_DEPTH) {
                        asm!(
                            "tileloadd tmm4, [{a0} + {sa}*1]",
                            "tileloadd tmm6, [{b0} + {sb}*1]",
                            "tdpbf16ps tmm0, tmm4, tmm6",
                            "tileloadd tmm7, [{b1} + {sb}*1]",
                            "tdpbf16ps tmm1, tmm4, tmm7",
                            "tileloadd tmm5, [{a1} + {sa}*1]",
                            "tdpbf16ps tmm2, tmm5, tmm6",
                            "tdpbf16ps tmm3, tmm5, tmm7",
                            a0 = in(reg) a0.add(k), a1 = in(reg) a1.add(k),
                            b0 = in(reg) b0.add(k * TILE), b1 = in(reg) b1.add(k * TILE),
                            sa = in(reg) a_stride, sb = in(reg) 64usize,
                            options(nostack, readonly),
                        );
                    }
                }
                asm!(
                    "tilestored [{c00} + {s}*1], tmm0",
                    "tilestored [{c01} + {s}*1], tmm1",
                    "tilestored [{c10} + {s}*1], tmm2",
                    "tilestored [{c11} + {s}*1], tmm3",
                    c00 = in(reg) c00, c01 = in(reg) c01, c10 = in(reg) c10,
                    c11 = in(reg) c11, s = in(reg) c_stride,
                    options(nostack),
                );
            }
        }
    }
    asm!("tilerelease", options(nostack, nomem));
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn block(
    _: &[(&[u16], &[u16])],
    _: usize,
    _: (usize, usize),
    _: (usize, usize),
    _: usize,
    _: &mut [f32],
) {
    unreachable!("matmul_nt refuses to run without AMX")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(12345);
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s as f32 / u32::MAX as f32 - 0.5) * 3.0
            })
            .collect()
    }

    /// `Σ a·b` in f64 over the logical operands.
    fn reference(a: &Operand, b: &Operand) -> Vec<f64> {
        let at = |o: &Operand, r: usize, k: usize| -> f64 {
            let i = if o.transposed {
                k * o.rows + r
            } else {
                r * o.depth + k
            };
            f64::from(o.values.get(i))
        };
        let mut c = vec![0.0; a.rows * b.rows];
        for i in 0..a.rows {
            for j in 0..b.rows {
                c[i * b.rows + j] = (0..a.depth).map(|k| at(a, i, k) * at(b, j, k)).sum();
            }
        }
        c
    }

    #[test]
    fn parts_add_up_to_the_value_exactly() {
        for &v in &values(10_000, 3) {
            let sum = f32::from_bits(u32::from(part_bits(v, Part::Hi)) << 16) as f64
                + f32::from_bits(u32::from(part_bits(v, Part::Mid)) << 16) as f64
                + f32::from_bits(u32::from(part_bits(v, Part::Lo)) << 16) as f64;
            assert_eq!(sum, v as f64, "{v}");
        }
    }

    #[test]
    fn products_match_f64_within_f32_rounding() {
        if !available() {
            return;
        }
        // Ragged shapes: none a multiple of a tile or block.
        for &(m, n, k) in &[(1, 1, 1), (37, 45, 70), (70, 600, 531), (300, 33, 1100)] {
            let av = values(m * k, 1);
            let bv = values(n * k, 2);
            let trits: Vec<i8> = values(n * k, 5)
                .iter()
                .map(|v| (v * 1.2).round().clamp(-1.0, 1.0) as i8)
                .collect();
            for transposed in [false, true] {
                let op = |v, rows, depth| {
                    if transposed {
                        Operand::transposed(v, rows, depth)
                    } else {
                        Operand::new(v, rows, depth)
                    }
                };
                let a = op(Values::F32(&av), m, k);
                for (b, terms) in [
                    (op(Values::F32(&bv), n, k), &F32_SPLIT[..]),
                    (op(Values::I8(&trits), n, k), &EXACT_SPLIT[..]),
                ] {
                    let mut c = vec![f32::NAN; m * n];
                    matmul_nt(&a, &b, terms, &mut c).unwrap();
                    let want = reference(&a, &b);
                    // Bound: f32 summation error of k terms of magnitude ≤ 1.5·1.5.
                    let tol = 2.25 * k as f64 * 2f64.powi(-21);
                    for (i, (&got, &w)) in c.iter().zip(&want).enumerate() {
                        assert!(
                            (got as f64 - w).abs() <= tol,
                            "{m}×{n}×{k} transposed {transposed} [{i}]: {got} vs {w}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn bad_shapes_are_errors() {
        if !available() {
            return;
        }
        let a = [0.0f32; 6];
        let b = [0i8; 6];
        let mut c = [0.0f32; 4];
        let e = matmul_nt(
            &Operand::new(Values::F32(&a), 2, 3),
            &Operand::new(Values::I8(&b), 2, 2),
            &EXACT_SPLIT,
            &mut c,
        )
        .unwrap_err();
        assert!(e.to_string().contains("right operand"), "{e}");
        let e = matmul_nt(
            &Operand::new(Values::F32(&a), 2, 3),
            &Operand::new(Values::I8(&b), 2, 3),
            &F32_SPLIT,
            &mut c,
        )
        .unwrap_err();
        assert!(e.to_string().contains("no Mid or Lo"), "{e}");
    }
}
