//! Misbehaving tracers for the sandbox tests.
//!
//! `describe` and `configure` behave, so each plugin loads; `trace-generation`
//! misbehaves in the way the enabled feature names. `trace-training` behaves,
//! so tests can check the plugin still works after being restarted.

wit_bindgen::generate!({
    path: "../../wit",
    world: "tracer-plugin",
});

use exports::tritlab::plugin::plugin::Guest as PluginGuest;
use exports::tritlab::plugin::tracer::Guest as TracerGuest;
use tritlab::plugin::types::{
    Annotation, GenerationStep, OptionValue, PluginInfo, PluginKind, Rgba, TrainingStep,
};

#[cfg(feature = "infinite-loop")]
const MISBEHAVIOUR: &str = "infinite-loop";
#[cfg(feature = "memory-bomb")]
const MISBEHAVIOUR: &str = "memory-bomb";
#[cfg(feature = "trap")]
const MISBEHAVIOUR: &str = "trap";
#[cfg(feature = "oversized-output")]
const MISBEHAVIOUR: &str = "oversized-output";
#[cfg(feature = "nonsense-output")]
const MISBEHAVIOUR: &str = "nonsense-output";
#[cfg(feature = "snoop")]
const MISBEHAVIOUR: &str = "snoop";
#[cfg(feature = "sleeper")]
const MISBEHAVIOUR: &str = "sleeper";
#[cfg(feature = "poller")]
const MISBEHAVIOUR: &str = "poller";

const GREY: Rgba = Rgba {
    r: 0x80,
    g: 0x80,
    b: 0x80,
    a: 0xFF,
};

struct Hostile;

impl PluginGuest for Hostile {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: format!("hostile-{MISBEHAVIOUR}"),
            version: env!("CARGO_PKG_VERSION").into(),
            kind: PluginKind::Tracer,
            description: format!("Sandbox test plugin: trace-generation does `{MISBEHAVIOUR}`."),
            options: Vec::new(),
        }
    }

    fn configure(_options: Vec<OptionValue>) -> Result<(), String> {
        Ok(())
    }
}

impl TracerGuest for Hostile {
    fn trace_generation(step: GenerationStep) -> Result<Annotation, String> {
        misbehave(step)
    }

    fn trace_training(step: TrainingStep) -> Result<Annotation, String> {
        Ok(Annotation {
            colour: GREY,
            trit: 0,
            label: format!("training {}", step.step),
        })
    }
}

#[cfg(feature = "infinite-loop")]
fn misbehave(step: GenerationStep) -> Result<Annotation, String> {
    // black_box keeps the optimiser from proving anything about the loop.
    let mut counter = step.step;
    loop {
        counter = std::hint::black_box(counter.wrapping_add(1));
    }
}

#[cfg(feature = "memory-bomb")]
fn misbehave(step: GenerationStep) -> Result<Annotation, String> {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        // Touch every page so the allocation is real.
        hoard.push(std::hint::black_box(vec![step.step as u8 | 1; 1 << 20]));
    }
}

#[cfg(feature = "trap")]
fn misbehave(step: GenerationStep) -> Result<Annotation, String> {
    panic!("hostile plugin panics on purpose at step {}", step.step)
}

#[cfg(feature = "oversized-output")]
fn misbehave(step: GenerationStep) -> Result<Annotation, String> {
    Ok(Annotation {
        colour: GREY,
        trit: 0,
        label: "x".repeat(1 << 20) + &step.token_text,
    })
}

#[cfg(feature = "nonsense-output")]
fn misbehave(step: GenerationStep) -> Result<Annotation, String> {
    Ok(Annotation {
        colour: GREY,
        trit: 7,
        label: step.token_text,
    })
}

#[cfg(feature = "sleeper")]
fn misbehave(step: GenerationStep) -> Result<Annotation, String> {
    // std's sleep is wasi-libc's clock_nanosleep: a monotonic-clock
    // subscription and a poll that would park the host thread.
    std::thread::sleep(std::time::Duration::from_secs(20));
    Ok(Annotation {
        colour: GREY,
        trit: 0,
        label: format!("slept through step {}", step.step),
    })
}

#[cfg(feature = "poller")]
fn misbehave(step: GenerationStep) -> Result<Annotation, String> {
    use wasi::clocks::monotonic_clock;
    use wasi::io::poll;
    // Polls a stream's pollable (stdin, which is closed and so ready), then
    // blocks on a twenty-second timer: the waiting imports called directly.
    let stdin = wasi::cli::stdin::get_stdin();
    let input = stdin.subscribe();
    let ready = poll::poll(&[&input]);
    let timer = monotonic_clock::subscribe_duration(20_000_000_000);
    timer.block();
    Ok(Annotation {
        colour: GREY,
        trit: 0,
        label: format!("polled {} ready at step {}", ready.len(), step.step),
    })
}

/// Tries to reach outside the sandbox and reports, in the label, what it
/// saw: `env=<variables> args=<arguments> file=<ok|denied> dir=<ok|denied>
/// wall=<seconds since 1970>`. (Sockets are left out: the Debian wasi-libc
/// the fallback toolchain links against has none, so std's TcpStream cannot
/// be linked there; the host denies TCP, UDP and name lookup regardless.)
#[cfg(feature = "snoop")]
fn misbehave(_step: GenerationStep) -> Result<Annotation, String> {
    let outcome = |ok: bool| if ok { "ok" } else { "denied" };
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(u64::MAX, |d| d.as_secs());
    let label = format!(
        "env={} args={} file={} dir={} wall={wall}",
        std::env::vars_os().count(),
        std::env::args_os().count(),
        outcome(std::fs::read("/etc/hostname").is_ok()),
        outcome(std::fs::read_dir(".").is_ok()),
    );
    Ok(Annotation {
        colour: GREY,
        trit: 0,
        label,
    })
}

export!(Hostile);
