//! Contract tests of the bundled `gay-tracer` through the real host.
//!
//! Test vectors: Gay.jl's `color_at(index; seed)` hashes `seed ⊻ index·γ`
//! with SplitMix64 and takes red, green, blue from the hash's low bytes.
//! The SplitMix64 outputs are the ones Gay.jl publishes for its stateful
//! generator seeded with the legacy seed `0x6761795f636f6c6f` ("gay_colo"):
//! 0xf061ebbc2ca74d78 then 0x34dc5aa0b7117465.

use crate::common;

use common::{host_with, token};
use tritlab_plugin_host::{PluginError, PluginKind, Rgba, TrainingStep, Trit};

/// `color_at(seed = 1069, index)` for index 1..=12, with the hue trit.
const SEED_1069: [(&str, i8); 12] = [
    ("#55B0E6", -1),
    ("#C8A0C2", 1),
    ("#FFA6C2", 1),
    ("#789A20", 0),
    ("#54C1ED", -1),
    ("#285DD0", -1),
    ("#6233EF", -1),
    ("#D4BE57", 1),
    ("#389BC3", -1),
    ("#7278C0", -1),
    ("#5FA42B", 0),
    ("#C3F7FA", -1),
];

const GOLDEN_GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;
const GAY_SEED_LEGACY: u64 = 0x6761_795f_636f_6c6f;

#[test]
fn describes_itself_as_a_tracer_with_a_seed_option() {
    let host = host_with(&["gay-tracer"]);
    let status = host.status("gay-tracer").expect("loaded");
    assert_eq!(status.info.kind, PluginKind::Tracer);
    assert_eq!(status.contract_version, "0.1.0");
    let seed = status
        .info
        .options
        .iter()
        .find(|o| o.name == "seed")
        .expect("seed option");
    assert_eq!(seed.default_value, "1069");
}

#[test]
fn default_seed_reproduces_gay_jl_color_at_1069() {
    let mut host = host_with(&["gay-tracer"]);
    for (step, (hex, trit)) in SEED_1069.iter().enumerate() {
        let annotation = host
            .trace_generation("gay-tracer", &token(step as u64, "t"))
            .expect("traces");
        assert_eq!(
            annotation.colour.hex(),
            *hex,
            "colour of step {step} (Gay.jl index {})",
            step + 1
        );
        assert_eq!(annotation.colour.a, 0xFF);
        assert_eq!(annotation.trit.value(), *trit, "trit of {hex}");
        assert_eq!(annotation.label, *hex);
    }
}

#[test]
fn splitmix64_matches_gay_jl_published_outputs() {
    // Step u64::MAX is Gay.jl index 0, whose hash is splitmix64(seed) itself:
    // the colour is that output's low three bytes (r, g, b).
    let mut host = host_with(&["gay-tracer"]);
    for (seed, output) in [
        (GAY_SEED_LEGACY, 0xf061_ebbc_2ca7_4d78u64),
        (
            GAY_SEED_LEGACY.wrapping_add(GOLDEN_GAMMA),
            0x34dc_5aa0_b711_7465,
        ),
    ] {
        host.configure("gay-tracer", &[("seed", &format!("{seed:#x}"))])
            .expect("seed accepted");
        let annotation = host
            .trace_generation("gay-tracer", &token(u64::MAX, "t"))
            .expect("traces");
        let expected = Rgba {
            r: output as u8,
            g: (output >> 8) as u8,
            b: (output >> 16) as u8,
            a: 0xFF,
        };
        assert_eq!(annotation.colour, expected, "seed {seed:#x}");
    }
}

#[test]
fn colours_are_a_pure_function_of_seed_and_step() {
    let steps = [7u64, 0, 1000, 3, 3, 1 << 40];
    let mut first = host_with(&["gay-tracer"]);
    let mut second = host_with(&["gay-tracer"]);
    let forward: Vec<_> = steps
        .iter()
        .map(|&s| {
            first
                .trace_generation("gay-tracer", &token(s, "a"))
                .expect("traces")
        })
        .collect();
    let backward: Vec<_> = steps
        .iter()
        .rev()
        .map(|&s| {
            second
                .trace_generation("gay-tracer", &token(s, "b"))
                .expect("traces")
        })
        .collect();
    for (a, b) in forward.iter().zip(backward.iter().rev()) {
        assert_eq!(a, b, "order and token text must not matter");
    }
    assert_eq!(forward[3], forward[4]);
    // Restarting the instance keeps colours (and the configured seed).
    first
        .configure("gay-tracer", &[("seed", "42")])
        .expect("seed accepted");
    let before = first
        .trace_generation("gay-tracer", &token(0, "x"))
        .expect("traces");
    first.restart("gay-tracer").expect("restarts");
    let after = first
        .trace_generation("gay-tracer", &token(0, "x"))
        .expect("traces");
    assert_eq!(before, after);
}

#[test]
fn seed_option_selects_the_stream() {
    let mut host = host_with(&["gay-tracer"]);
    host.configure("gay-tracer", &[("seed", "42")])
        .expect("seed accepted");
    let hexes: Vec<String> = (0..3)
        .map(|s| {
            host.trace_generation("gay-tracer", &token(s, "t"))
                .expect("traces")
                .colour
                .hex()
        })
        .collect();
    assert_eq!(hexes, ["#03F166", "#E375EF", "#74C905"]);

    let err = host
        .configure("gay-tracer", &[("seed", "not a number")])
        .expect_err("bad seed refused");
    assert!(matches!(err, PluginError::Reported { .. }), "{err}");
    assert!(
        err.to_string().contains("gay-tracer") && err.to_string().contains("plugin.configure"),
        "{err}"
    );
    // An orderly refusal is not a fault: the plugin stays healthy.
    let status = host.status("gay-tracer").expect("loaded");
    assert!(status.enabled);
    assert_eq!(status.total_failures, 0);
}

#[test]
fn training_steps_use_their_own_stream_and_the_same_trit_rule() {
    let mut host = host_with(&["gay-tracer"]);
    let expected = [("#4FB13B", 0), ("#0333FA", -1), ("#F7316F", 1)];
    for (step, (hex, trit)) in expected.iter().enumerate() {
        let training = TrainingStep {
            step: step as u64,
            loss: 2.5,
            ..Default::default()
        };
        let annotation = host
            .trace_training("gay-tracer", &training)
            .expect("traces");
        assert_eq!(annotation.colour.hex(), *hex);
        assert_eq!(annotation.trit.value(), *trit);
    }
}

/// Hue in degrees, or None for greys.
fn hue(colour: Rgba) -> Option<f64> {
    let (r, g, b) = (
        f64::from(colour.r),
        f64::from(colour.g),
        f64::from(colour.b),
    );
    let (max, min) = (r.max(g).max(b), r.min(g).min(b));
    let chroma = max - min;
    if chroma == 0.0 {
        return None;
    }
    let h = if max == r {
        ((g - b) / chroma).rem_euclid(6.0)
    } else if max == g {
        (b - r) / chroma + 2.0
    } else {
        (r - g) / chroma + 4.0
    };
    Some(h * 60.0)
}

#[test]
fn trit_follows_the_documented_hue_rule_over_many_steps() {
    let mut host = host_with(&["gay-tracer"]);
    let mut seen = [false; 3];
    for step in 0..500 {
        let annotation = host
            .trace_generation("gay-tracer", &token(step, "t"))
            .expect("traces");
        let expected = match hue(annotation.colour) {
            None => Trit::Zero,
            Some(h) if !(60.0..300.0).contains(&h) => Trit::Positive,
            Some(h) if h < 180.0 => Trit::Zero,
            Some(_) => Trit::Negative,
        };
        assert_eq!(
            annotation.trit,
            expected,
            "step {step}: {}",
            annotation.colour.hex()
        );
        seen[(annotation.trit.value() + 1) as usize] = true;
    }
    assert_eq!(seen, [true; 3], "all three trits occur");
}
