//! Plugin overhead: load, instantiate and per-call latency.
//!
//!     scripts/build-plugins.sh
//!     cargo bench -p tritlab-plugin-host --bench plugin_overhead
//!
//! The headline figure is "tracer µs per token": the cost `gay-tracer` adds
//! to every generated token. Set `TRITLAB_DECODE_MS_PER_TOKEN` to a model's
//! decode time to also print the overhead as a percentage of it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tritlab_plugin_host::{
    CheckSubject, GenerationStep, HostConfig, LogitsSummary, PluginHost, TokenLogit, Trit,
    TritCounts, TritRow, TritTensor, VisualInput,
};

/// A repeating -1, 0, +1 pattern of `len` trits.
fn cycling_trits(len: usize) -> Vec<Trit> {
    const CYCLE: [Trit; 3] = [Trit::Negative, Trit::Zero, Trit::Positive];
    (0..len).map(|k| CYCLE[k % 3]).collect()
}

fn plugin(name: &str) -> PathBuf {
    let dir = match std::env::var_os("TRITLAB_PLUGIN_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/plugins"),
    };
    let path = dir.join(format!("{name}.wasm"));
    if !path.is_file() {
        eprintln!(
            "{} is missing: run `scripts/build-plugins.sh` first",
            path.display()
        );
        std::process::exit(1);
    }
    path
}

/// Times `iterations` runs of `f`; returns per-run durations, sorted.
fn sample(iterations: usize, mut f: impl FnMut()) -> Vec<Duration> {
    let mut times: Vec<Duration> = (0..iterations)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    times.sort();
    times
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn report(label: &str, times: &[Duration]) -> f64 {
    let mean = times.iter().sum::<Duration>() / times.len() as u32;
    let p50 = times[times.len() / 2];
    let p99 = times[(times.len() * 99 / 100).min(times.len() - 1)];
    println!(
        "{label:<44} mean {:>9.2} µs   p50 {:>9.2} µs   p99 {:>9.2} µs   (n = {})",
        micros(mean),
        micros(p50),
        micros(p99),
        times.len()
    );
    micros(mean)
}

fn step(i: u64) -> GenerationStep {
    GenerationStep {
        step: i,
        position: i as u32,
        token_id: 1000 + i as u32,
        token_text: " ternary".into(),
        logits: LogitsSummary {
            top: (0..5)
                .map(|k| TokenLogit {
                    token_id: k,
                    logit: 10.0 - k as f32,
                })
                .collect(),
            max_logit: 10.0,
            mean_logit: -1.5,
            entropy: 2.25,
        },
        trits: TritCounts {
            neg: 700_000,
            zero: 1_100_000,
            pos: 700_003,
        },
    }
}

fn host() -> PluginHost {
    PluginHost::new(HostConfig::default()).unwrap_or_else(|err| panic!("{err}"))
}

fn main() {
    println!("tritlab plugin overhead (wasmtime host, default sandbox limits)\n");

    let gay = plugin("gay-tracer");
    let load = sample(5, || {
        host().load_file(&gay).unwrap_or_else(|err| panic!("{err}"));
    });
    report("load gay-tracer, compiling (no cache)", &load);

    let cache = std::env::temp_dir().join(format!("tritlab-bench-cache-{}", std::process::id()));
    let cached_config = || HostConfig {
        cache_dir: Some(cache.clone()),
        ..HostConfig::default()
    };
    PluginHost::new(cached_config())
        .unwrap_or_else(|err| panic!("{err}"))
        .load_file(&gay)
        .unwrap_or_else(|err| panic!("{err}"));
    let cached = sample(20, || {
        PluginHost::new(cached_config())
            .unwrap_or_else(|err| panic!("{err}"))
            .load_file(&gay)
            .unwrap_or_else(|err| panic!("{err}"));
    });
    report("load gay-tracer, from the compiled cache", &cached);
    let _ = std::fs::remove_dir_all(&cache);

    let mut host = host();
    host.load_file(&gay).unwrap_or_else(|err| panic!("{err}"));
    host.load_file(plugin("example"))
        .unwrap_or_else(|err| panic!("{err}"));
    host.load_file(plugin("triad-checker"))
        .unwrap_or_else(|err| panic!("{err}"));
    host.load_file(plugin("trit-visualiser"))
        .unwrap_or_else(|err| panic!("{err}"));

    let instantiate = sample(200, || {
        host.restart("gay-tracer")
            .unwrap_or_else(|err| panic!("{err}"))
    });
    report("instantiate gay-tracer (fresh store)", &instantiate);

    for i in 0..1000 {
        host.trace_generation("gay-tracer", &step(i))
            .unwrap_or_else(|err| panic!("{err}"));
    }
    let mut i = 0;
    let per_token = sample(20_000, || {
        i += 1;
        host.trace_generation("gay-tracer", &step(i))
            .unwrap_or_else(|err| panic!("{err}"));
    });
    let tracer_us = report("gay-tracer trace-generation (per token)", &per_token);

    let both = sample(10_000, || {
        i += 1;
        for (_, result) in host.trace_generation_all(&step(i)) {
            result.unwrap_or_else(|err| panic!("{err}"));
        }
    });
    report("all tracers (gay-tracer + example) per token", &both);

    let row = CheckSubject::Row(TritRow {
        tensor: "w".into(),
        row: 0,
        trits: cycling_trits(2560),
    });
    let check = sample(2_000, || {
        host.check("triad-checker", &row)
            .unwrap_or_else(|err| panic!("{err}"));
    });
    report("triad-checker check (2560-trit row)", &check);

    let tensor = VisualInput::Tensor(TritTensor {
        name: "w".into(),
        shape: vec![256, 256],
        trits: cycling_trits(256 * 256),
    });
    let render = sample(200, || {
        host.render("trit-visualiser", &tensor)
            .unwrap_or_else(|err| panic!("{err}"));
    });
    report("trit-visualiser render (256×256 tensor)", &render);

    println!("\ntracer overhead: {tracer_us:.2} µs per token (gay-tracer, mean)");
    if let Some(ms) = std::env::var("TRITLAB_DECODE_MS_PER_TOKEN")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
    {
        println!(
            "at a decode time of {ms} ms/token that is {:.3}% of decode time (target < 5%)",
            tracer_us / (ms * 1000.0) * 100.0
        );
    }
}
