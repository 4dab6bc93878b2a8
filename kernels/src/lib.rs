//! Ternary kernels for BitNet b1.58: trit packings, quantizers and integer matrix products.
//!
//! Everything numeric in tritlab stands on this crate, so it depends on nothing heavy: `std`,
//! `rayon` for threads, `thiserror` for errors and `serde` so that [`Trit`] and [`TritCounts`],
//! the one trit type and count type every crate shares, serialise the same everywhere.
//!
//! * [`pack`] — lossless encodings: I2 (2 bits/trit), T1 (base 3, 1.6 bits/trit) and the Hugging
//!   Face BitNet packed layout.
//! * [`quant`] — absmean weight quantization (per tensor or per group) and per-token int8 absmax
//!   activation quantization, rounding half-to-even like the PyTorch reference.
//! * [`matrix`] — [`TernaryMatrix`], with GEMV/GEMM (`y = scale_w · scale_x · (W_trits ·
//!   x_int8)`, exact i32 accumulation) over rayon threads, in one of two [`Packing`]s: the
//!   blocked I2 layout (2 bits per trit) or T1 (1.6 bits per trit).
//! * [`amx`] — dense products on AMX tiles for training's backward pass and output head, with
//!   f32 operands cut into exact bf16 parts.
//! * [`backend`] — scalar, AVX2, AVX-512 VNNI and NEON paths, chosen at run time
//!   (`TRITLAB_KERNEL=scalar` forces the reference path).
//! * `t1` — the T1 packing's products (byte permutes on AVX-512 VBMI, a look-up table elsewhere).
//! * [`head`] — [`HeadMatrix`], the output head (bf16, int8, Q6, Q4) as an f32 GEMV.
//! * [`mem`] — weight buffers on 2 MiB pages, so streaming them is not held up at every 4 KiB.
//! * [`probe`] — the machine's read bandwidth, the bound decoding is held to.
//! * [`tune`] — single-token products tuned to the host while they run (rows side by side,
//!   prefetch distance).

pub mod amx;
pub mod backend;
pub mod dense;
pub mod error;
pub mod head;
pub mod mapped;
pub mod matrix;
pub mod mem;
pub mod pack;
pub mod probe;
pub mod quant;
mod t1;
pub mod trit;
pub mod tune;

pub use backend::Backend;
pub use error::{KernelError, Result};
pub use head::{HeadMatrix, HeadPrecision};
pub use matrix::{Packing, TernaryMatrix};
pub use quant::{
    quantize_absmean, QuantizedActivations, ScaleGranularity, TernaryWeights, WeightScale,
};
pub use trit::{count_trits, gf3_add, NotATrit, Trit, TritCounts};
