//! Loading the bundled plugins as the workbench does, and the template.

use crate::common;

use common::{bundled, host_with, plugin_dir, temp_dir, token};
use tritlab_plugin_host::{
    Call, HostConfig, LoadError, LogLevel, PluginError, PluginHost, PluginKind, TritCounts,
};

#[test]
fn the_plugin_folder_loads_every_bundled_plugin() {
    let mut host = PluginHost::new(HostConfig::default()).expect("host starts");
    let loaded: Vec<String> = host
        .load_dir(plugin_dir())
        .into_iter()
        .map(|result| result.unwrap_or_else(|err| panic!("{err}")).name)
        .collect();
    for name in ["example", "gay-tracer", "triad-checker", "trit-visualiser"] {
        assert!(
            loaded.iter().any(|n| n == name),
            "{name} missing from {loaded:?}"
        );
    }
    let kinds: Vec<(String, PluginKind)> = host
        .plugins()
        .into_iter()
        .map(|status| (status.info.name, status.info.kind))
        .collect();
    assert!(kinds.contains(&("trit-visualiser".into(), PluginKind::Visualiser)));
    for status in host.plugins() {
        assert!(status.enabled);
        assert!(!status.info.version.is_empty() && !status.info.description.is_empty());
        assert_eq!(
            status.contract_version,
            tritlab_plugin_host::CONTRACT_VERSION
        );
    }

    // Loading the same folder again reports duplicates and keeps the first.
    for result in host.load_dir(plugin_dir()) {
        assert!(
            matches!(result, Err(LoadError::DuplicateName { .. })),
            "{result:?}"
        );
    }
    assert_eq!(host.plugins().len(), loaded.len());
}

#[test]
fn missing_folder_holds_no_plugins() {
    let mut host = PluginHost::new(HostConfig::default()).expect("host starts");
    assert!(host
        .load_dir(plugin_dir().join("does-not-exist"))
        .is_empty());
}

#[test]
fn example_template_colours_by_trit_balance_and_logs() {
    let mut host = host_with(&["example"]);
    let mut step = token(0, "tok");
    step.trits = TritCounts {
        neg: 3,
        zero: 5,
        pos: 9,
    };
    let annotation = host.trace_generation("example", &step).expect("traces");
    assert_eq!(
        (annotation.trit.value(), annotation.label.as_str()),
        (1, "tok")
    );
    step.trits = TritCounts {
        neg: 9,
        zero: 5,
        pos: 3,
    };
    assert_eq!(
        host.trace_generation("example", &step)
            .expect("traces")
            .trit
            .value(),
        -1
    );

    host.configure("example", &[("prefix", "» ")])
        .expect("option accepted");
    assert_eq!(
        host.trace_generation("example", &step)
            .expect("traces")
            .label,
        "» tok"
    );
    let (logs, dropped) = host.drain_logs();
    assert_eq!(dropped, 0);
    assert!(
        logs.iter().any(|r| r.plugin == "example"
            && r.level == LogLevel::Debug
            && r.message == "example configured"),
        "{logs:?}"
    );
    let err = host
        .configure("example", &[("colour", "red")])
        .expect_err("unknown option");
    assert!(
        matches!(
            err,
            PluginError::Reported {
                call: Call::Configure,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn calls_are_checked_against_the_plugin_kind_and_name() {
    let mut host = host_with(&["triad-checker"]);
    let err = host
        .trace_generation("triad-checker", &token(0, "t"))
        .expect_err("not a tracer");
    assert!(
        matches!(
            err,
            PluginError::WrongKind {
                actual: PluginKind::Checker,
                ..
            }
        ),
        "{err}"
    );
    assert!(!err.is_fault());
    let err = host
        .trace_generation("nobody", &token(0, "t"))
        .expect_err("not loaded");
    assert!(matches!(err, PluginError::NotFound { .. }), "{err}");
    assert!(host.unload("triad-checker"));
    assert!(host.plugins().is_empty());
}

#[test]
fn compiled_plugins_are_cached_by_content() {
    let cache = temp_dir("plugin-cache");
    let config = || HostConfig {
        cache_dir: Some(cache.clone()),
        ..HostConfig::default()
    };
    let entries = || std::fs::read_dir(&cache).expect("cache exists").count();

    let mut first = PluginHost::new(config()).expect("host starts");
    first.load_file(bundled("gay-tracer")).expect("loads");
    assert_eq!(entries(), 1, "one compiled entry written");
    let expected = first
        .trace_generation("gay-tracer", &token(0, "t"))
        .expect("traces");

    let mut second = PluginHost::new(config()).expect("host starts");
    second
        .load_file(bundled("gay-tracer"))
        .expect("loads from the cache");
    assert_eq!(
        second
            .trace_generation("gay-tracer", &token(0, "t"))
            .expect("traces"),
        expected
    );
    assert_eq!(entries(), 1);
    drop((first, second));

    // A damaged entry is discarded and rebuilt, never trusted.
    let entry = std::fs::read_dir(&cache)
        .expect("cache exists")
        .next()
        .expect("entry")
        .expect("entry")
        .path();
    std::fs::write(&entry, b"not machine code").expect("overwrite entry");
    let mut third = PluginHost::new(config()).expect("host starts");
    third.load_file(bundled("gay-tracer")).expect("recompiles");
    assert_eq!(
        third
            .trace_generation("gay-tracer", &token(0, "t"))
            .expect("traces"),
        expected
    );
    assert!(std::fs::read(&entry).expect("entry rewritten").len() > 1000);
    let _ = std::fs::remove_dir_all(&cache);
}
