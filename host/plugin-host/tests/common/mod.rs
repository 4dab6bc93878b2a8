//! Shared by the integration tests: where the built plugins are, and
//! small constructors.
//!
//! The tests load real components built by `scripts/build-plugins.sh`. When
//! they are missing the tests fail (never skip) and say how to build them.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use tritlab_plugin_host::{GenerationStep, HostConfig, PluginHost, Trit};

/// `$TRITLAB_PLUGIN_DIR`, else `<repo>/target/plugins`.
pub fn plugin_dir() -> PathBuf {
    match std::env::var_os("TRITLAB_PLUGIN_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/plugins"),
    }
}

fn require(path: PathBuf) -> PathBuf {
    assert!(
        path.is_file(),
        "plugin component {} is missing: run `scripts/build-plugins.sh` first \
         (or point TRITLAB_PLUGIN_DIR at a folder of built plugins)",
        path.display()
    );
    path
}

/// A bundled plugin's component, e.g. `bundled("gay-tracer")`.
pub fn bundled(name: &str) -> PathBuf {
    require(plugin_dir().join(format!("{name}.wasm")))
}

/// A hostile test plugin's component, e.g. `hostile("infinite-loop")`.
pub fn hostile(misbehaviour: &str) -> PathBuf {
    require(
        plugin_dir()
            .join("hostile")
            .join(format!("{misbehaviour}.wasm")),
    )
}

/// A host with default limits and the given plugins loaded.
pub fn host_with(plugins: &[&str]) -> PluginHost {
    let mut host = PluginHost::new(HostConfig::default()).expect("host starts");
    for name in plugins {
        host.load_file(bundled(name))
            .unwrap_or_else(|err| panic!("{err}"));
    }
    host
}

/// A generation step with only the index and text set.
pub fn token(step: u64, text: &str) -> GenerationStep {
    GenerationStep {
        step,
        position: step as u32,
        token_text: text.into(),
        ..Default::default()
    }
}

/// A fresh empty folder under the system temp dir.
pub fn temp_dir(label: &str) -> PathBuf {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!("tritlab-{label}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// Trits from -1/0/+1 values (test input is known to be valid).
pub fn trits(values: &[i8]) -> Vec<Trit> {
    values
        .iter()
        .map(|&v| Trit::from_i8(v).expect("test data holds trits"))
        .collect()
}

/// A deterministic pseudo-random trit matrix (xorshift), row-major.
pub fn random_trits(len: usize, seed: u64) -> Vec<Trit> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            match state % 3 {
                0 => Trit::Negative,
                1 => Trit::Zero,
                _ => Trit::Positive,
            }
        })
        .collect()
}
