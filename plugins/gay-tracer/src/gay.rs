//! Gay.jl's random-access colour stream, reimplemented.
//!
//! Gay.jl (bmorphism/Gay.jl) gives every index of a seeded stream a colour
//! that is a pure function of `(seed, index)`: `color_at(index; seed)` hashes
//! `seed ⊻ index·γ` with the SplitMix64 finaliser and reads red, green and
//! blue from the low three bytes of the hash. No state is carried between
//! indices, so colours are identical on every machine and in any order.
//! See `plugins/gay-tracer/README.md` for the deviations.

/// SplitMix64's increment: 2^64 / φ, the golden-ratio "gamma".
pub const GOLDEN_GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;
const MIX1: u64 = 0xbf58_476d_1ce4_e5b9;
const MIX2: u64 = 0x94d0_49bb_1331_11eb;

/// Gay.jl's canonical default seed.
pub const DEFAULT_SEED: u64 = 1069;

/// One SplitMix64 step on `state`: add gamma, then apply the finaliser.
/// This is a bijection on u64, so distinct inputs never collide.
pub fn splitmix64(state: u64) -> u64 {
    let mut z = state.wrapping_add(GOLDEN_GAMMA);
    z = (z ^ (z >> 30)).wrapping_mul(MIX1);
    z = (z ^ (z >> 27)).wrapping_mul(MIX2);
    z ^ (z >> 31)
}

/// The seed of an independent child stream of `seed`, numbered `stream`.
///
/// Used to give training steps their own colours, unrelated to those of
/// generation steps under the same user seed.
pub fn split_seed(seed: u64, stream: u64) -> u64 {
    splitmix64(seed ^ stream.wrapping_mul(GOLDEN_GAMMA).rotate_left(17))
}

/// An 8-bit sRGB colour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rgb8 {
    pub r: u8,
    pub g: u8,
    pub b: u8,
}

impl Rgb8 {
    /// `#RRGGBB`, upper case, as Gay.jl prints colours.
    pub fn hex(self) -> String {
        format!("#{:02X}{:02X}{:02X}", self.r, self.g, self.b)
    }

    /// Hue in degrees in [0, 360), or `None` for greys (no hue).
    pub fn hue_degrees(self) -> Option<f64> {
        let (r, g, b) = (f64::from(self.r), f64::from(self.g), f64::from(self.b));
        let max = r.max(g).max(b);
        let min = r.min(g).min(b);
        let chroma = max - min;
        if chroma == 0.0 {
            return None;
        }
        let sector = if max == r {
            ((g - b) / chroma).rem_euclid(6.0)
        } else if max == g {
            (b - r) / chroma + 2.0
        } else {
            (r - g) / chroma + 4.0
        };
        Some((sector * 60.0).rem_euclid(360.0))
    }
}

/// The colour at `index` of the stream `seed` (Gay.jl's `color_at(index; seed)`).
/// Gay.jl counts indices from 1.
pub fn color_at(seed: u64, index: u64) -> Rgb8 {
    let h = splitmix64(seed ^ index.wrapping_mul(GOLDEN_GAMMA));
    Rgb8 {
        r: (h & 0xff) as u8,
        g: ((h >> 8) & 0xff) as u8,
        b: ((h >> 16) & 0xff) as u8,
    }
}

/// The trit of a colour, by hue, following the Gay MCP convention:
/// warm hues [0°, 60°) ∪ [300°, 360°) → +1, neutral [60°, 180°) → 0,
/// cold [180°, 300°) → -1. Greys have no hue and map to 0.
pub fn hue_trit(colour: Rgb8) -> i8 {
    match colour.hue_degrees() {
        None => 0,
        Some(h) if !(60.0..300.0).contains(&h) => 1,
        Some(h) if h < 180.0 => 0,
        Some(_) => -1,
    }
}
