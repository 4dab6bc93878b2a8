//! Sandbox tests with purpose-built hostile plugins (`plugins/hostile`).
//!
//! Each misbehaves in `trace-generation` and behaves elsewhere. For each,
//! the host must stop it, report an error naming the plugin and the call,
//! survive, keep serving the other plugins, and disable it if it keeps
//! failing.

use crate::common;

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
    // This is about memory, not time: a generous deadline, so that a loaded machine (where
    // growing 64 MiB can take longer than the default 100 ms) still meets the memory limit
    // first.
    let config = HostConfig {
        limits: Limits {
            call_timeout: Duration::from_secs(5),
            ..Limits::default()
        },
        ..HostConfig::default()
    };
    let mut host = PluginHost::new(config).expect("host starts");
    host.load_file(bundled("gay-tracer")).expect("loads");
    host.load_file(hostile("memory-bomb")).expect("loads");
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

/// Asserts that a call to a plugin that tries to wait was stopped at once,
/// by the sandbox's refusal to wait, well inside twice the deadline.
fn assert_refused_to_wait(misbehaviour: &str, import: &str) {
    let mut host = host_with_hostile(misbehaviour);
    let plugin = format!("hostile-{misbehaviour}");
    let limit = host.limits().call_timeout;
    let started = Instant::now();
    let err = host
        .trace_generation(&plugin, &token(0, "t"))
        .expect_err("stopped");
    let elapsed = started.elapsed();
    eprintln!("{plugin}: stopped after {elapsed:?} (deadline {limit:?}): {err}");
    assert!(elapsed < 2 * limit, "took {elapsed:?}");
    let PluginError::Forbidden {
        call,
        import: ref called,
        ..
    } = err
    else {
        panic!("expected Forbidden, got {err}");
    };
    assert_eq!(call, Call::TraceGeneration);
    assert_eq!(called, import);
    let message = err.to_string();
    assert!(
        message.contains(&plugin) && message.contains("plugins may not sleep or wait"),
        "{message}"
    );
    assert!(
        !message.contains("time limit"),
        "it was not a timeout: {message}"
    );
    assert_host_goes_on(&mut host, &plugin);
}

#[test]
fn sleeping_is_refused_at_once() {
    assert_refused_to_wait("sleeper", "wasi:clocks/monotonic-clock.subscribe-duration");
}

#[test]
fn polling_and_blocking_are_refused_at_once() {
    assert_refused_to_wait("poller", "wasi:io/poll.poll");
}

/// A tracer written in the component text format. `module_fields` are added
/// to its core module; `trace_generation` is the body of its
/// `trace-generation` core function, which must leave a pointer to a
/// `result<annotation, string>` (offset 128 holds an `ok` one) on the stack.
fn wat_tracer(module_fields: &str, trace_generation: &str) -> String {
    wat_component(1, module_fields, "(i32.const 0)", trace_generation)
}

/// [`wat_tracer`] with `pages` of memory and `describe` as the body of its
/// `describe` core function, which must leave a pointer to a `plugin-info`
/// (offset 0 holds one) on the stack.
fn wat_component(
    pages: u32,
    module_fields: &str,
    describe: &str,
    trace_generation: &str,
) -> String {
    WAT_TRACER
        .replace("{MEMORY_PAGES}", &pages.to_string())
        .replace("{MODULE_FIELDS}", module_fields)
        .replace("{DESCRIBE}", describe)
        .replace("{TRACE_GENERATION}", trace_generation)
}

const WAT_TRACER: &str = r#"
(component
  (core module $m
    (memory (export "memory") {MEMORY_PAGES})
    (global $heap (mut i32) (i32.const 4096))
    (func (export "realloc") (param i32 i32 i32 i32) (result i32)
      (local $p i32)
      (local.set $p (i32.and
        (i32.add (global.get $heap) (i32.sub (local.get 2) (i32.const 1)))
        (i32.sub (i32.const 0) (local.get 2))))
      (global.set $heap (i32.add (local.get $p) (local.get 3)))
      (local.get $p))
    (data (i32.const 0)
      "\00\01\00\00\0e\00\00\00" "\10\01\00\00\05\00\00\00" "\00\00\00\00"
      "\20\01\00\00\04\00\00\00" "\00\00\00\00\00\00\00\00")
    (data (i32.const 256) "hostile-wasmtx")
    (data (i32.const 272) "0.1.0")
    (data (i32.const 288) "test")
    (data (i32.const 128) "\00\00\00\00\80\80\80\ff\00\00\00\00\2c\01\00\00\02\00\00\00")
    (data (i32.const 300) "ok")
    {MODULE_FIELDS}
    (func (export "describe") (result i32) {DESCRIBE})
    (func (export "configure") (param i32 i32) (result i32) (i32.const 64))
    (func (export "trace-generation")
      (param i64 i32 i32 i32 i32 i32 i32 f32 f32 f32 i64 i64 i64) (result i32)
      {TRACE_GENERATION})
    (func (export "trace-training")
      (param i64 f32 f32 f32 i32 i32 i32 i32 i32 i32 i64 i64 i64 i32) (result i32)
      (i32.const 128))
  )
  (core instance $i (instantiate $m))
  (type $trit-counts (record (field "negative" u64) (field "zero" u64) (field "positive" u64)))
  (type $token-logit (record (field "token-id" u32) (field "logit" f32)))
  (type $logits-summary (record (field "top" (list $token-logit)) (field "max-logit" f32)
    (field "mean-logit" f32) (field "entropy" f32)))
  (type $generation-step (record (field "step" u64) (field "position" u32) (field "token-id" u32)
    (field "token-text" string) (field "logits" $logits-summary) (field "trits" $trit-counts)))
  (type $layer-transition (record (field "layer" string) (field "transitions" (list u64))
    (field "counts" $trit-counts) (field "gf3-sum" u8)))
  (type $training-step (record (field "step" u64) (field "loss" f32) (field "learning-rate" f32)
    (field "grad-norm" f32) (field "world-hash-before" string) (field "world-hash-after" string)
    (field "layers" (list $layer-transition)) (field "counts" $trit-counts) (field "gf3-sum" u8)))
  (type $rgba (record (field "r" u8) (field "g" u8) (field "b" u8) (field "a" u8)))
  (type $annotation (record (field "colour" $rgba) (field "trit" s8) (field "label" string)))
  (type $plugin-kind (enum "tracer" "checker" "visualiser"))
  (type $option-spec (record (field "name" string) (field "description" string)
    (field "default-value" string)))
  (type $plugin-info (record (field "name" string) (field "version" string)
    (field "kind" $plugin-kind) (field "description" string) (field "options" (list $option-spec))))
  (type $option-value (record (field "name" string) (field "value" string)))
  (func $describe (result $plugin-info)
    (canon lift (core func $i "describe") (memory (core memory $i "memory"))
      (realloc (core func $i "realloc"))))
  (func $configure (param "options" (list $option-value)) (result (result (error string)))
    (canon lift (core func $i "configure") (memory (core memory $i "memory"))
      (realloc (core func $i "realloc"))))
  (func $trace-generation (param "step" $generation-step)
    (result (result $annotation (error string)))
    (canon lift (core func $i "trace-generation") (memory (core memory $i "memory"))
      (realloc (core func $i "realloc"))))
  (func $trace-training (param "step" $training-step)
    (result (result $annotation (error string)))
    (canon lift (core func $i "trace-training") (memory (core memory $i "memory"))
      (realloc (core func $i "realloc"))))
  (instance $plugin
    (export "plugin-kind" (type $plugin-kind))
    (export "option-spec" (type $option-spec))
    (export "plugin-info" (type $plugin-info))
    (export "option-value" (type $option-value))
    (export "describe" (func $describe))
    (export "configure" (func $configure)))
  (instance $tracer
    (export "trit-counts" (type $trit-counts))
    (export "token-logit" (type $token-logit))
    (export "logits-summary" (type $logits-summary))
    (export "generation-step" (type $generation-step))
    (export "layer-transition" (type $layer-transition))
    (export "training-step" (type $training-step))
    (export "rgba" (type $rgba))
    (export "annotation" (type $annotation))
    (export "trace-generation" (func $trace-generation))
    (export "trace-training" (func $trace-training)))
  (export "tritlab:plugin/plugin@0.1.0" (instance $plugin))
  (export "tritlab:plugin/tracer@0.1.0" (instance $tracer))
)
"#;

/// Writes a text-format component to a fresh folder and returns its path.
fn wat_plugin(label: &str, wat: &str) -> std::path::PathBuf {
    let dir = temp_dir(label);
    let path = dir.join(format!("{label}.wasm"));
    std::fs::write(&path, wat).expect("write component text");
    path
}

/// Tables that each grow by 2^20 elements filled with a function
/// reference, so every element is written: 48 of them hold 384 MiB (at
/// eight bytes an element) unless tables count against the memory budget.
fn table_hoarder() -> String {
    let tables = 48;
    let mut fields = String::from("(func $nop) (elem declare func $nop)\n");
    let mut body = String::new();
    for t in 0..tables {
        fields.push_str(&format!("(table $t{t} 0 funcref)\n"));
        body.push_str(&format!(
            "(drop (table.grow $t{t} (ref.func $nop) (i32.const 1048576)))\n"
        ));
    }
    body.push_str("(i32.const 128)");
    wat_tracer(&fields, &body)
}

/// Describes itself with 100 000 options whose three strings all point at
/// the same 1 MiB of its memory: 300 000 MiB for the host to copy, from
/// under 4 MiB of plugin memory.
fn aliasing_output() -> String {
    let describe = r#"
      (local $i i32) (local $p i32)
      (local.set $p (i32.const 0x200000))
      (loop $fill
        (i32.store (local.get $p) (i32.const 0x10000))
        (i32.store offset=4 (local.get $p) (i32.const 0x100000))
        (i32.store offset=8 (local.get $p) (i32.const 0x10000))
        (i32.store offset=12 (local.get $p) (i32.const 0x100000))
        (i32.store offset=16 (local.get $p) (i32.const 0x10000))
        (i32.store offset=20 (local.get $p) (i32.const 0x100000))
        (local.set $p (i32.add (local.get $p) (i32.const 24)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $fill (i32.lt_u (local.get $i) (i32.const 100000))))
      (i32.store offset=28 (i32.const 0) (i32.const 0x200000))
      (i32.store offset=32 (i32.const 0) (i32.const 100000))
      (i32.const 0)"#;
    // 0x10000: 1 MiB of zero bytes (valid UTF-8); 0x200000: the options.
    wat_component(80, "", describe, "(i32.const 128)")
}

#[test]
fn aliased_output_is_refused_before_it_is_copied() {
    let mut host = host_with(&["gay-tracer"]);
    let started = Instant::now();
    let err = host
        .load_file(wat_plugin("aliasing-output", &aliasing_output()))
        .expect_err("refused");
    let elapsed = started.elapsed();
    eprintln!("aliasing-output: refused after {elapsed:?}: {err}");
    let LoadError::Describe { ref source, .. } = err else {
        panic!("expected Describe, got {err}");
    };
    assert!(
        matches!(
            source,
            PluginError::InvalidOutput {
                call: Call::Describe,
                ..
            }
        ),
        "{source}"
    );
    assert!(err.to_string().contains("output limit"), "{err}");
    assert!(elapsed < Duration::from_secs(2), "took {elapsed:?}");
    assert_host_goes_on(&mut host, "none");
}

#[test]
fn the_text_format_tracer_is_a_working_plugin() {
    let mut host = host_with(&["gay-tracer"]);
    let info = host
        .load_file(wat_plugin("wat-tracer", &wat_tracer("", "(i32.const 128)")))
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(info.name, "hostile-wasmtx");
    let annotation = host
        .trace_generation("hostile-wasmtx", &token(0, "t"))
        .expect("answers");
    assert_eq!(annotation.label, "ok");
}

#[test]
fn table_growth_counts_against_the_memory_budget() {
    let mut host = host_with(&["gay-tracer"]);
    host.load_file(wat_plugin("table-hoarder", &table_hoarder()))
        .unwrap_or_else(|err| panic!("{err}"));
    let err = host
        .trace_generation("hostile-wasmtx", &token(0, "t"))
        .expect_err("stopped");
    assert!(
        matches!(err, PluginError::MemoryLimit { call: Call::TraceGeneration, limit_bytes, .. } if limit_bytes == 64 << 20),
        "{err}"
    );
    assert_host_goes_on(&mut host, "none");
}

#[test]
fn memory64_and_multi_memory_are_refused_at_load() {
    let cases = [
        ("memory64", "(memory $wide i64 1)", "memory64"),
        ("multi-memory", "(memory $second 1)", "multi"),
    ];
    for (label, field, expected) in cases {
        let mut host = host_with(&["gay-tracer"]);
        let path = wat_plugin(label, &wat_tracer(field, "(i32.const 128)"));
        let err = host.load_file(&path).expect_err("refused");
        assert!(matches!(err, LoadError::Compile { .. }), "{label}: {err}");
        assert!(err.to_string().contains(expected), "{label}: {err}");
        assert_host_goes_on(&mut host, "none");
    }
}

#[test]
fn oversized_modules_are_refused_before_reading() {
    let dir = temp_dir("oversized-module");
    let huge = dir.join("huge.wasm");
    let file = std::fs::File::create(&huge).expect("create");
    // Sparse: takes no disk space, but its size is past the limit.
    file.set_len(1 << 30).expect("grow");
    let mut host = host_with(&["gay-tracer"]);
    let started = Instant::now();
    let err = host.load_file(&huge).expect_err("refused");
    eprintln!(
        "oversized module: refused after {:?}: {err}",
        started.elapsed()
    );
    assert!(
        matches!(err, LoadError::TooLarge { size, limit, .. } if size == 1 << 30 && limit == 16 << 20),
        "{err}"
    );
    let message = err.to_string();
    assert!(
        message.contains("huge.wasm") && message.contains("1073741824"),
        "{message}"
    );

    let config = HostConfig {
        limits: Limits {
            max_module_bytes: 1000,
            ..Limits::default()
        },
        ..HostConfig::default()
    };
    let mut small = PluginHost::new(config).expect("host starts");
    let err = small.load_file(bundled("gay-tracer")).expect_err("refused");
    assert!(
        matches!(err, LoadError::TooLarge { limit: 1000, .. }),
        "{err}"
    );
    assert_host_goes_on(&mut host, "none");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_folder_loads_at_most_the_plugin_limit() {
    let dir = temp_dir("many-plugins");
    for name in ["a", "b", "c"] {
        std::fs::copy(bundled("gay-tracer"), dir.join(format!("{name}.wasm"))).expect("copy");
    }
    let config = HostConfig {
        limits: Limits {
            max_plugins_per_dir: 1,
            ..Limits::default()
        },
        ..HostConfig::default()
    };
    let mut host = PluginHost::new(config).expect("host starts");
    let results = host.load_dir(&dir);
    assert_eq!(results.len(), 3);
    assert!(results[0].is_ok());
    for result in &results[1..] {
        assert!(
            matches!(result, Err(LoadError::TooMany { limit: 1, .. })),
            "{result:?}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The one `.cwasm` artifact in `dir`.
fn only_artifact(dir: &std::path::Path) -> std::path::PathBuf {
    let artifacts: Vec<_> = std::fs::read_dir(dir)
        .expect("cache dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
        .collect();
    assert_eq!(artifacts.len(), 1, "{artifacts:?}");
    artifacts[0].clone()
}

fn cached_host(dir: &std::path::Path) -> PluginHost {
    PluginHost::new(HostConfig {
        cache_dir: Some(dir.to_path_buf()),
        ..HostConfig::default()
    })
    .expect("host starts")
}

#[test]
fn a_cache_entry_for_other_code_is_ignored_and_recompiled() {
    use std::os::unix::fs::PermissionsExt as _;
    let root = temp_dir("cache-tamper");
    let (other_dir, dir) = (root.join("other"), root.join("cache"));
    cached_host(&other_dir)
        .load_file(bundled("example"))
        .expect("loads");
    cached_host(&dir)
        .load_file(bundled("gay-tracer"))
        .expect("loads");
    let mode = std::fs::metadata(&dir)
        .expect("cache dir")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700, "the cache folder is private");
    // Another plugin's compiled code under the gay tracer's name: loading it
    // would run the wrong code.
    let entry = only_artifact(&dir);
    std::fs::copy(only_artifact(&other_dir), &entry).expect("swap");
    let info = cached_host(&dir)
        .load_file(bundled("gay-tracer"))
        .expect("loads");
    assert_eq!(
        info.name, "gay-tracer",
        "recompiled, not the swapped-in code"
    );
    // Garbage under the right name is also recompiled, and the entry repaired.
    std::fs::write(&entry, b"not compiled code").expect("tamper");
    let mut host = cached_host(&dir);
    host.load_file(bundled("gay-tracer")).expect("loads");
    assert_host_goes_on(&mut host, "none");
    assert_ne!(std::fs::read(&entry).expect("entry"), b"not compiled code");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn a_cache_folder_others_can_write_is_not_used() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = temp_dir("cache-shared");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let mut host = cached_host(&dir);
    let (logs, _) = host.drain_logs();
    assert!(
        logs.iter()
            .any(|r| r.plugin == tritlab_plugin_host::HOST_LOG_NAME
                && r.message.contains("writable by group or others")),
        "{logs:?}"
    );
    host.load_file(bundled("gay-tracer")).expect("still loads");
    assert_eq!(
        std::fs::read_dir(&dir).expect("dir").count(),
        0,
        "nothing was written to it"
    );
    assert_host_goes_on(&mut host, "none");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A field of `/proc/self/status` in KiB (`VmRSS`, `VmHWM`).
fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// What one hostile call cost the host: wall time, and how far the peak
/// resident memory rose above what it was just before the call.
struct Figure {
    wall: Duration,
    peak_growth_mib: f64,
}

/// Runs `call` with the peak-RSS mark reset first (writing 5 to
/// `/proc/self/clear_refs`), so `VmHWM` afterwards is the peak during it.
fn measure<T>(call: impl FnOnce() -> T) -> (T, Figure) {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let before = status_kib("VmRSS").unwrap_or(0);
    let started = Instant::now();
    let result = call();
    let wall = started.elapsed();
    let peak = status_kib("VmHWM").unwrap_or(0);
    let figure = Figure {
        wall,
        peak_growth_mib: peak.saturating_sub(before) as f64 / 1024.0,
    };
    (result, figure)
}

const MEASURE_ENV: &str = "TRITLAB_SANDBOX_MEASURE";

/// Every hostile plugin's call, one after another in a process of its own
/// (this test binary, run again for `measured_hostile_calls_child` alone),
/// so no other test's allocations show in the resident-memory figures.
/// Prints one row per plugin.
#[test]
fn measured_hostile_calls() {
    let output = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "measured_hostile_calls_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(MEASURE_ENV, "1")
        .output()
        .expect("runs");
    eprint!("{}", String::from_utf8_lossy(&output.stderr));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
}

#[test]
fn measured_hostile_calls_child() {
    if std::env::var_os(MEASURE_ENV).is_none() {
        return;
    }
    let mut host = host_with(&["gay-tracer"]);
    let limits = host.limits().clone();
    let deadline = limits.call_timeout;
    let budget_mib = (limits.memory_bytes >> 20) as f64;
    let bound_mib = budget_mib + 16.0;
    eprintln!(
        "| hostile plugin | outcome | wall time | deadline | peak RSS growth | memory budget |"
    );
    eprintln!("|---|---|---|---|---|---|");
    let row = |name: &str, outcome: &str, figure: &Figure| {
        eprintln!(
            "| {name} | {outcome} | {:.1} ms | {} ms | {:.1} MiB | {budget_mib:.0} MiB |",
            figure.wall.as_secs_f64() * 1e3,
            deadline.as_millis(),
            figure.peak_growth_mib,
        );
        assert!(
            figure.peak_growth_mib <= bound_mib,
            "{name}: resident memory grew {:.1} MiB, over {bound_mib} MiB",
            figure.peak_growth_mib
        );
    };
    // Warm the host's own paths first, so only the hostile call shows.
    host.trace_generation("gay-tracer", &token(0, "t"))
        .expect("works");

    for misbehaviour in [
        "infinite-loop",
        "memory-bomb",
        "trap",
        "oversized-output",
        "nonsense-output",
        "sleeper",
        "poller",
    ] {
        let plugin = format!("hostile-{misbehaviour}");
        host.load_file(hostile(misbehaviour))
            .unwrap_or_else(|err| panic!("{err}"));
        let (result, figure) = measure(|| host.trace_generation(&plugin, &token(0, "t")));
        let err = result.expect_err("refused");
        row(&plugin, short_outcome(&err.to_string()), &figure);
        // The table above is the measurement (about 1.1× the deadline on a quiet machine); the
        // bound leaves room for a loaded one, where the epoch ticker thread waits for a core.
        assert!(figure.wall < 5 * deadline, "{plugin}: {:?}", figure.wall);
        host.unload(&plugin);
        assert_host_goes_on(&mut host, "none");
    }

    host.load_file(wat_plugin("table-hoarder", &table_hoarder()))
        .unwrap_or_else(|err| panic!("{err}"));
    let (result, figure) = measure(|| host.trace_generation("hostile-wasmtx", &token(0, "t")));
    let err = result.expect_err("refused");
    row(
        "table-hoarder (text format)",
        short_outcome(&err.to_string()),
        &figure,
    );
    assert!(figure.wall < 5 * deadline, "{:?}", figure.wall);
    host.unload("hostile-wasmtx");
    assert_host_goes_on(&mut host, "none");

    // These fail at load (which includes compiling and `describe`).
    let loads = [
        ("aliasing-output (text format)", aliasing_output()),
        (
            "memory64 (text format)",
            wat_tracer("(memory $wide i64 1)", "(i32.const 128)"),
        ),
        (
            "multi-memory (text format)",
            wat_tracer("(memory $second 1)", "(i32.const 128)"),
        ),
    ];
    for (name, wat) in loads {
        let path = wat_plugin("measured", &wat);
        let (result, figure) = measure(|| host.load_file(&path));
        let err = result.expect_err("refused");
        row(name, short_outcome(&err.to_string()), &figure);
        assert!(
            figure.wall < Duration::from_secs(2),
            "{name}: {:?}",
            figure.wall
        );
        assert_host_goes_on(&mut host, "none");
    }
    let dir = temp_dir("measured-oversized");
    let huge = dir.join("huge.wasm");
    std::fs::File::create(&huge)
        .and_then(|f| f.set_len(1 << 30))
        .expect("sparse file");
    let (result, figure) = measure(|| host.load_file(&huge));
    let err = result.expect_err("refused");
    row(
        "oversized module (1 GiB)",
        short_outcome(&err.to_string()),
        &figure,
    );
    let _ = std::fs::remove_dir_all(&dir);
    assert_host_goes_on(&mut host, "none");
}

/// The kind of failure in an error message, for the table.
fn short_outcome(message: &str) -> &'static str {
    [
        ("time limit", "timeout"),
        ("memory past the limit", "memory limit"),
        ("plugins may not sleep or wait", "refused to wait"),
        ("output limit", "output refused before copying"),
        ("invalid output", "invalid output"),
        ("trapped", "trap"),
        ("more than the limit", "module too large"),
        ("not a valid WebAssembly component", "refused at compile"),
    ]
    .into_iter()
    .find(|(needle, _)| message.contains(needle))
    .map_or("other", |(_, outcome)| outcome)
}
