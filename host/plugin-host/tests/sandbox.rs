//! Sandbox tests with purpose-built hostile plugins (`plugins/hostile`).
//!
//! Each misbehaves in `trace-generation` and behaves elsewhere. For each,
//! the host must stop it, report an error naming the plugin and the call,
//! survive, keep serving the other plugins, and disable it if it keeps
//! failing.

mod common;

use std::time::{Duration, Instant};

use common::{bundled, host_with, hostile, temp_dir, token};
use tritlab_plugin_host::{
    Call, HostConfig, Limits, LoadError, PluginError, PluginHost, TrainingStep,
};

/// Loads a hostile plugin next to the gay tracer.
fn host_with_hostile(misbehaviour: &str) -> PluginHost {
    let mut host = host_with(&["gay-tracer"]);
    let info = host
        .load_file(hostile(misbehaviour))
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(info.name, format!("hostile-{misbehaviour}"));
    host
}

/// The host and the other plugins still work, and the hostile plugin still
/// answers the calls it does not misbehave in.
fn assert_host_goes_on(host: &mut PluginHost, hostile_name: &str) {
    let annotation = host
        .trace_generation("gay-tracer", &token(0, "t"))
        .expect("other plugins still work");
    assert_eq!(annotation.colour.hex(), "#55B0E6");
    assert_eq!(annotation.trit.value(), -1);
    if host.status(hostile_name).is_some_and(|s| s.enabled) {
        let training = host
            .trace_training(hostile_name, &TrainingStep::default())
            .expect("fresh instance works");
        assert_eq!(training.label, "training 0");
    }
}

#[test]
fn infinite_loop_is_stopped_at_the_deadline() {
    let mut host = host_with_hostile("infinite-loop");
    let limit = host.limits().call_timeout;
    let started = Instant::now();
    let err = host
        .trace_generation("hostile-infinite-loop", &token(0, "t"))
        .expect_err("stopped");
    let elapsed = started.elapsed();
    assert!(
        matches!(
            err,
            PluginError::Timeout {
                call: Call::TraceGeneration,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(limit, Duration::from_millis(100), "the default deadline");
    // Stopped at the deadline: not before it (less one epoch tick), and
    // within it plus the tick and generous slack for a loaded machine.
    assert!(
        elapsed >= limit - Duration::from_millis(10),
        "stopped too early: {elapsed:?}"
    );
    assert!(
        elapsed < limit + Duration::from_millis(250),
        "stopped too late: {elapsed:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains("hostile-infinite-loop") && message.contains("tracer.trace-generation"),
        "{message}"
    );
    assert!(message.contains("time limit"), "{message}");
    assert_host_goes_on(&mut host, "hostile-infinite-loop");
}

#[test]
fn deadline_is_configurable() {
    let config = HostConfig {
        limits: Limits {
            call_timeout: Duration::from_millis(20),
            ..Limits::default()
        },
        epoch_tick: Duration::from_millis(1),
        ..HostConfig::default()
    };
    let mut host = PluginHost::new(config).expect("host starts");
    host.load_file(hostile("infinite-loop")).expect("loads");
    let started = Instant::now();
    let err = host
        .trace_generation("hostile-infinite-loop", &token(0, "t"))
        .expect_err("stopped");
    let elapsed = started.elapsed();
    assert!(
        matches!(err, PluginError::Timeout { limit, .. } if limit == Duration::from_millis(20)),
        "{err}"
    );
    assert!(
        elapsed >= Duration::from_millis(19),
        "stopped too early: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_millis(20 + 250),
        "stopped too late: {elapsed:?}"
    );
}

#[test]
fn memory_bomb_is_stopped_at_the_limit() {
    let mut host = host_with_hostile("memory-bomb");
    let err = host
        .trace_generation("hostile-memory-bomb", &token(0, "t"))
        .expect_err("stopped");
    assert!(
        matches!(err, PluginError::MemoryLimit { call: Call::TraceGeneration, limit_bytes, .. } if limit_bytes == 64 << 20),
        "{err}"
    );
    assert!(
        err.to_string().contains("hostile-memory-bomb") && err.to_string().contains("67108864"),
        "{err}"
    );
    assert_host_goes_on(&mut host, "hostile-memory-bomb");
}

#[test]
fn memory_limit_is_configurable() {
    let config = HostConfig {
        limits: Limits {
            memory_bytes: 8 << 20,
            ..Limits::default()
        },
        ..HostConfig::default()
    };
    let mut host = PluginHost::new(config).expect("host starts");
    host.load_file(hostile("memory-bomb")).expect("loads");
    host.load_file(bundled("gay-tracer"))
        .expect("a normal plugin fits in 8 MiB");
    let err = host
        .trace_generation("hostile-memory-bomb", &token(0, "t"))
        .expect_err("stopped");
    assert!(
        matches!(err, PluginError::MemoryLimit { limit_bytes, .. } if limit_bytes == 8 << 20),
        "{err}"
    );
}

#[test]
fn trap_is_reported_with_the_panic_message() {
    let mut host = host_with_hostile("trap");
    let err = host
        .trace_generation("hostile-trap", &token(41, "t"))
        .expect_err("trapped");
    assert!(
        matches!(
            err,
            PluginError::Trap {
                call: Call::TraceGeneration,
                ..
            }
        ),
        "{err}"
    );
    let message = err.to_string();
    assert!(
        message.contains("hostile-trap") && message.contains("tracer.trace-generation"),
        "{message}"
    );
    assert!(
        message.contains("hostile plugin panics on purpose at step 41"),
        "{message}"
    );
    assert!(
        !message.contains("RUST_BACKTRACE"),
        "native-only hints are dropped: {message}"
    );
    assert_host_goes_on(&mut host, "hostile-trap");
}

#[test]
fn oversized_output_is_refused() {
    let mut host = host_with_hostile("oversized-output");
    let err = host
        .trace_generation("hostile-oversized-output", &token(0, "t"))
        .expect_err("refused");
    assert!(
        matches!(
            err,
            PluginError::InvalidOutput {
                call: Call::TraceGeneration,
                ..
            }
        ),
        "{err}"
    );
    let message = err.to_string();
    assert!(
        message.contains("label is 1048577 bytes long; the limit is 256"),
        "{message}"
    );
    assert_host_goes_on(&mut host, "hostile-oversized-output");
}

#[test]
fn nonsense_output_is_refused() {
    let mut host = host_with_hostile("nonsense-output");
    let err = host
        .trace_generation("hostile-nonsense-output", &token(0, "t"))
        .expect_err("refused");
    assert!(matches!(err, PluginError::InvalidOutput { .. }), "{err}");
    assert!(
        err.to_string().contains("trit is 7, which is not a trit"),
        "{err}"
    );
    assert_host_goes_on(&mut host, "hostile-nonsense-output");
}

#[test]
fn wrong_contract_version_is_refused_at_load_naming_both_versions() {
    let mut host = host_with(&["gay-tracer"]);
    let err = host
        .load_file(hostile("wrong-version"))
        .expect_err("refused");
    let LoadError::IncompatibleContract {
        ref plugin_version,
        ref host_version,
        ..
    } = err
    else {
        panic!("expected IncompatibleContract, got {err}");
    };
    assert_eq!(
        (plugin_version.as_str(), host_version.as_str()),
        ("9.0.0", "0.1.0")
    );
    let message = err.to_string();
    assert!(
        message.contains("tritlab:plugin@9.0.0") && message.contains("tritlab:plugin@0.1.0"),
        "{message}"
    );
    assert!(message.contains("wrong-version"), "{message}");
    assert_eq!(host.plugins().len(), 1, "nothing was added");
    assert_host_goes_on(&mut host, "none");
}

#[test]
fn a_plugin_that_keeps_failing_is_disabled_and_can_be_enabled_again() {
    let mut host = host_with_hostile("trap");
    let max = host.limits().max_consecutive_failures;
    for attempt in 1..=max {
        let err = host
            .trace_generation("hostile-trap", &token(0, "t"))
            .expect_err("traps");
        assert!(
            matches!(err, PluginError::Trap { .. }),
            "attempt {attempt}: {err}"
        );
        let status = host.status("hostile-trap").expect("loaded");
        assert_eq!(status.consecutive_failures, attempt);
        assert_eq!(status.enabled, attempt < max);
    }
    let err = host
        .trace_generation("hostile-trap", &token(0, "t"))
        .expect_err("disabled");
    assert!(
        matches!(err, PluginError::Disabled { failures, .. } if failures == max),
        "{err}"
    );
    assert!(
        err.to_string().contains("hostile-trap") && err.to_string().contains("panics on purpose"),
        "{err}"
    );
    let status = host.status("hostile-trap").expect("loaded");
    assert!(!status.enabled);
    assert_eq!(status.total_failures, u64::from(max));
    assert!(status
        .last_error
        .as_deref()
        .is_some_and(|e| e.contains("trapped")));

    // Disabled plugins are skipped when every tracer is asked.
    let all = host.trace_generation_all(&token(0, "t"));
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].0, "gay-tracer");
    assert!(all[0].1.is_ok());

    // Enabling gives it a fresh chance; a success clears the streak.
    host.set_enabled("hostile-trap", true)
        .expect("known plugin");
    host.trace_training("hostile-trap", &TrainingStep::default())
        .expect("works again");
    assert_eq!(
        host.status("hostile-trap")
            .expect("loaded")
            .consecutive_failures,
        0
    );
}

#[test]
fn every_hostile_plugin_at_once_leaves_the_good_one_working() {
    let mut host = host_with(&["gay-tracer", "example"]);
    for misbehaviour in [
        "infinite-loop",
        "memory-bomb",
        "trap",
        "oversized-output",
        "nonsense-output",
    ] {
        host.load_file(hostile(misbehaviour))
            .unwrap_or_else(|err| panic!("{err}"));
    }
    for step in 0..4 {
        for (plugin, result) in host.trace_generation_all(&token(step, "t")) {
            let good = plugin == "gay-tracer" || plugin == "example";
            assert_eq!(result.is_ok(), good, "{plugin}: {result:?}");
            if let Err(err) = result {
                assert_eq!(err.plugin(), plugin);
                assert_eq!(err.call(), Some(Call::TraceGeneration));
            }
        }
    }
    let enabled: Vec<String> = host
        .plugins()
        .into_iter()
        .filter(|s| s.enabled)
        .map(|s| s.info.name)
        .collect();
    assert_eq!(
        enabled,
        ["gay-tracer", "example"],
        "the hostile ones were disabled"
    );
}

#[test]
fn files_that_are_not_plugins_are_refused() {
    let dir = temp_dir("not-plugins");
    let garbage = dir.join("garbage.wasm");
    std::fs::write(&garbage, b"\0asm definitely not a component").expect("write");
    let mut host = PluginHost::new(HostConfig::default()).expect("host starts");
    let err = host.load_file(&garbage).expect_err("refused");
    assert!(matches!(err, LoadError::Compile { .. }), "{err}");
    assert!(err.to_string().contains("garbage"), "{err}");
    let err = host
        .load_file(dir.join("absent.wasm"))
        .expect_err("refused");
    assert!(matches!(err, LoadError::Read { .. }), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn wasi_grants_no_files_environment_or_time_of_day() {
    let mut host = PluginHost::new(HostConfig::default()).expect("host starts");
    host.load_file(hostile("snoop")).expect("loads");
    let annotation = host
        .trace_generation("hostile-snoop", &token(0, "t"))
        .expect("behaves");
    assert_eq!(
        annotation.label,
        "env=0 args=0 file=denied dir=denied wall=0"
    );
}
