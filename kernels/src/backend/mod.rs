//! Instruction-set specific kernels and run-time dispatch.
//!
//! Every backend computes the same exact integer dot products Σ trit·q over the kernel layout of
//! [`crate::matrix`]; only the instructions differ. The f32 epilogue is shared, so all backends
//! produce bit-identical outputs.

use crate::error::{KernelError, Result};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

#[cfg(target_arch = "x86_64")]
pub(crate) mod amx;
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2;
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512;
#[cfg(target_arch = "aarch64")]
pub(crate) mod neon;
pub(crate) mod scalar;

/// Environment variable that picks a backend by name (`scalar`, `avx2`, `avx512`, `neon`, `auto`).
/// `TRITLAB_KERNEL=scalar` forces the portable reference path, for debugging.
pub const BACKEND_ENV: &str = "TRITLAB_KERNEL";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// Portable reference: plain Rust, no SIMD.
    Scalar,
    /// x86-64 AVX2: `vpmaddubsw` on 256-bit vectors.
    Avx2,
    /// x86-64 AVX-512 with VNNI: `vpdpbusd` on 512-bit vectors.
    Avx512Vnni,
    /// AVX-512 VNNI for one token, AMX int8 tiles (`tdpbusd`) for several ([`amx`]).
    Amx,
    /// AArch64 Advanced SIMD.
    Neon,
}

impl Backend {
    pub const ALL: [Backend; 5] = [
        Backend::Scalar,
        Backend::Avx2,
        Backend::Avx512Vnni,
        Backend::Amx,
        Backend::Neon,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Backend::Scalar => "scalar",
            Backend::Avx2 => "avx2",
            Backend::Avx512Vnni => "avx512-vnni",
            Backend::Amx => "amx-int8",
            Backend::Neon => "neon",
        }
    }

    pub fn parse(name: &str) -> Option<Backend> {
        match name.trim().to_ascii_lowercase().as_str() {
            "scalar" => Some(Backend::Scalar),
            "avx2" => Some(Backend::Avx2),
            "avx512" | "avx512-vnni" | "avx512vnni" => Some(Backend::Avx512Vnni),
            "amx" | "amx-int8" => Some(Backend::Amx),
            "neon" => Some(Backend::Neon),
            _ => None,
        }
    }

    /// Whether this CPU can run the backend.
    pub fn is_supported(self) -> bool {
        match self {
            Backend::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Backend::Avx2 => is_x86_feature_detected!("avx2"),
            #[cfg(target_arch = "x86_64")]
            Backend::Avx512Vnni => {
                is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx512bw")
                    && is_x86_feature_detected!("avx512vl")
                    && is_x86_feature_detected!("avx512vnni")
            }
            #[cfg(target_arch = "x86_64")]
            Backend::Amx => Backend::Avx512Vnni.is_supported() && crate::amx::int8_available(),
            #[cfg(target_arch = "aarch64")]
            Backend::Neon => std::arch::is_aarch64_feature_detected!("neon"),
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// Every backend this CPU supports, slowest first.
    pub fn supported() -> Vec<Backend> {
        Self::ALL.into_iter().filter(|b| b.is_supported()).collect()
    }

    /// The fastest backend this CPU supports.
    pub fn best() -> Backend {
        [
            Backend::Amx,
            Backend::Avx512Vnni,
            Backend::Neon,
            Backend::Avx2,
        ]
        .into_iter()
        .find(|b| b.is_supported())
        .unwrap_or(Backend::Scalar)
    }

    /// The backend named by [`BACKEND_ENV`], if any. An unknown or unsupported name is an error.
    pub fn requested() -> Result<Option<Backend>> {
        let Ok(value) = std::env::var(BACKEND_ENV) else {
            return Ok(None);
        };
        if value.trim().is_empty() || value.trim().eq_ignore_ascii_case("auto") {
            return Ok(None);
        }
        let backend = Backend::parse(&value).ok_or(KernelError::UnknownBackend(value))?;
        if !backend.is_supported() {
            return Err(KernelError::Unsupported(backend.name()));
        }
        Ok(Some(backend))
    }

    /// The backend the kernels use: [`BACKEND_ENV`] when it names a supported backend, else
    /// [`best`](Self::best). Decided once per process. Front ends should call
    /// [`requested`](Self::requested) at start-up to report a bad value to the user.
    pub fn active() -> Backend {
        static ACTIVE: OnceLock<Backend> = OnceLock::new();
        *ACTIVE.get_or_init(|| {
            Backend::requested()
                .ok()
                .flatten()
                .unwrap_or_else(Backend::best)
        })
    }

    /// The backend whose vector code this one runs for a single token, for per-group scales and
    /// for the other kernels (T1 decoding, the output head): AMX's is AVX-512 VNNI's.
    pub(crate) fn vector(self) -> Backend {
        match self {
            Backend::Amx => Backend::Avx512Vnni,
            other => other,
        }
    }

    /// Whether products of `tokens` tokens of an I2 matrix with per-tensor scales run on AMX
    /// tiles ([`amx_dots`]) with this backend.
    pub(crate) fn tiles_for(self, tokens: usize) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            self == Backend::Amx && tokens >= amx::MIN_TOKENS
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = tokens;
            false
        }
    }

    pub(crate) fn ensure_supported(self) -> Result<()> {
        if self.is_supported() {
            Ok(())
        } else {
            Err(KernelError::Unsupported(self.name()))
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Bytes ahead of the current position at which the output head and T1 products prefetch
/// (the I2 products take theirs from [`crate::tune::Setting`]); the tuner sets it to what it
/// chose.
static PREFETCH_DISTANCE: AtomicUsize = AtomicUsize::new(DEFAULT_PREFETCH_DISTANCE);

/// The prefetch distance until [`set_prefetch_distance`] says otherwise: 8 KiB keeps about
/// 128 lines in flight per stream, enough for ~30 GB/s at ~250 ns of latency.
pub const DEFAULT_PREFETCH_DISTANCE: usize = 8192;

/// How far ahead single-token kernels prefetch weight rows, in bytes.
pub fn prefetch_distance() -> usize {
    PREFETCH_DISTANCE.load(Ordering::Relaxed)
}

/// Sets the prefetch distance (rounded to whole 64-byte lines, at most 64 KiB; 0 turns software
/// prefetch off). The right distance is bandwidth × latency, which differs between hosts, so it
/// is a run-time setting: [`crate::tune`] measures it on the real work.
pub fn set_prefetch_distance(bytes: usize) {
    PREFETCH_DISTANCE.store((bytes.min(64 << 10) / 64) * 64, Ordering::Relaxed);
}

/// One token's activations as the kernels read them. (NEON multiplies trits directly and reads
/// only the natural order.)
#[derive(Clone, Copy)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) struct TokenView<'a> {
    /// Natural order, zero-padded to whole blocks.
    pub natural: &'a [i8],
    /// Pair-interleaved order (512-bit kernels).
    pub pairs: &'a [i8],
    /// Σ q over the whole row.
    pub sum: i32,
    /// Σ q per block.
    pub block_sums: &'a [i32],
}

impl<'a> TokenView<'a> {
    /// Token `t` of `x`, in every order the kernels read.
    pub(crate) fn of(x: &'a crate::quant::QuantizedActivations, t: usize) -> Self {
        TokenView {
            natural: x.token(t),
            pairs: x.token_pair_order(t),
            sum: x.sum(t),
            block_sums: x.block_sums(t),
        }
    }
}

/// Σ trit·q for `out.len() / tokens.len()` rows against each token: `out[r * tokens.len() + t]`.
/// `stream` says how a single token reads the rows (AVX2 and AVX-512; see [`crate::tune`]).
///
/// # Safety contract (checked by callers in `matrix`)
/// `rows` holds whole rows of `stride` bytes; every token row is `stride * 4` values long.
#[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))]
pub(crate) fn dots(
    backend: Backend,
    rows: &[u8],
    stride: usize,
    tokens: &[TokenView],
    out: &mut [i32],
    stream: crate::tune::Setting,
) {
    // The SIMD paths are `target_feature` functions: calling one on a CPU without the feature
    // is undefined behaviour, so this is checked in every build (a cached CPUID look-up).
    assert!(
        backend.is_supported(),
        "{backend:?} is not supported by this CPU"
    );
    // The SIMD paths read through raw pointers: hold every shape to the contract first.
    assert!(
        stride > 0
            && stride.is_multiple_of(crate::matrix::BLOCK_BYTES)
            && rows.len().is_multiple_of(stride),
        "rows are not whole rows of whole blocks"
    );
    assert_eq!(
        out.len(),
        rows.len() / stride * tokens.len(),
        "output length"
    );
    assert!(
        tokens
            .iter()
            .all(|t| t.natural.len() >= stride * 4 && t.pairs.len() >= stride * 4),
        "activations shorter than a row"
    );
    match backend {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the backend was checked to be supported by this CPU when it was chosen.
        Backend::Avx2 => unsafe { avx2::dots(rows, stride, tokens, out, stream) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above (AMX implies AVX-512 VNNI; several tokens go to `amx_dots`).
        Backend::Avx512Vnni | Backend::Amx => unsafe {
            avx512::dots(rows, stride, tokens, out, stream)
        },
        #[cfg(target_arch = "aarch64")]
        // SAFETY: as above.
        Backend::Neon => unsafe { neon::dots(rows, stride, tokens, out) },
        _ => scalar::dots(rows, stride, tokens, out),
    }
}

/// Σ trit·q per row and per block, for one token: `out[r * blocks + b]`.
pub(crate) fn block_dots(
    backend: Backend,
    rows: &[u8],
    stride: usize,
    token: &TokenView,
    out: &mut [i32],
) {
    // The SIMD paths are `target_feature` functions: calling one on a CPU without the feature
    // is undefined behaviour, so this is checked in every build (a cached CPUID look-up).
    assert!(
        backend.is_supported(),
        "{backend:?} is not supported by this CPU"
    );
    assert!(
        stride > 0
            && stride.is_multiple_of(crate::matrix::BLOCK_BYTES)
            && rows.len().is_multiple_of(stride),
        "rows are not whole rows of whole blocks"
    );
    let blocks = stride / crate::matrix::BLOCK_BYTES;
    assert_eq!(out.len(), rows.len() / stride * blocks, "output length");
    assert!(
        token.natural.len() >= stride * 4 && token.block_sums.len() >= blocks,
        "activations shorter than a row"
    );
    match backend {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the backend was checked to be supported by this CPU when it was chosen.
        Backend::Avx2 => unsafe { avx2::block_dots(rows, stride, token, out) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above (AMX implies AVX-512 VNNI).
        Backend::Avx512Vnni | Backend::Amx => unsafe {
            avx512::block_dots(rows, stride, token, out)
        },
        #[cfg(target_arch = "aarch64")]
        // SAFETY: as above.
        Backend::Neon => unsafe { neon::block_dots(rows, stride, token, out) },
        _ => scalar::block_dots(rows, stride, token, out),
    }
}

/// Σ trit·q of I2 rows against tokens laid out for AMX tiles: `out[r * tokens.len() + t]`.
#[cfg(target_arch = "x86_64")]
pub(crate) fn amx_dots(rows: &[u8], stride: usize, tokens: &amx::Tokens, out: &mut [i32]) {
    // `amx::dots` runs tile instructions: without AMX they fault, so this is checked in every
    // build (a cached look-up), as are the shapes its raw tile loads rely on.
    assert!(
        Backend::Amx.is_supported(),
        "AMX int8 is not supported by this CPU"
    );
    assert!(
        stride > 0
            && stride.is_multiple_of(crate::matrix::BLOCK_BYTES)
            && rows.len().is_multiple_of(stride),
        "rows are not whole rows of whole blocks"
    );
    assert_eq!(
        tokens.depth(),
        stride * 4,
        "tokens packed for another depth"
    );
    assert_eq!(
        out.len(),
        rows.len() / stride * tokens.len(),
        "output length"
    );
    // SAFETY: AMX int8 was checked above, and so were the shapes.
    unsafe { amx::dots(rows, stride, tokens, out) }
}

/// Σ trit·q of `nrows` rows that `unpack(r, codes)` writes as codes (trit + 1, natural order,
/// `tokens.depth()` of them) against tokens laid out for AMX tiles: `out[r * tokens.len() + t]`.
#[cfg(target_arch = "x86_64")]
pub(crate) fn amx_dots_with(
    nrows: usize,
    unpack: &dyn Fn(usize, &mut [u8]),
    tokens: &amx::Tokens,
    out: &mut [i32],
) {
    assert!(
        Backend::Amx.is_supported(),
        "AMX int8 is not supported by this CPU"
    );
    assert_eq!(out.len(), nrows * tokens.len(), "output length");
    // SAFETY: AMX int8 was checked above; `dots_with` checks the output length itself and
    // hands `unpack` buffers of exactly the tokens' depth.
    unsafe { amx::dots_with(nrows, unpack, tokens, out) }
}
