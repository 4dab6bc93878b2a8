//! What the session's integration tests share: a session on the default model, and running a
//! cell while collecting its live events.
// Each test file uses a different part of this module.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use tritlab_session::{Context, Execution, LiveEvent, Session, SessionConfig};
use tritlab_workbook::{Output, Table};

/// The repository's root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn default_model() -> PathBuf {
    root().join("assets/default-model")
}

/// A session with the default model loaded and no plugins (the plugin host has its own tests).
pub fn session() -> Session {
    Session::new(SessionConfig {
        default_model: Some(default_model()),
        plugin_dirs: Vec::new(),
        plugin_cache: None,
        load_default_model: true,
        ..SessionConfig::default()
    })
}

/// Runs `source` to the end, collecting the live events.
pub fn run(session: &mut Session, source: &str) -> (Execution, Vec<LiveEvent>) {
    let cancel = AtomicBool::new(false);
    let mut events = Vec::new();
    let mut collect = |e: LiveEvent| events.push(e);
    let mut ctx = Context {
        cancel: &cancel,
        events: &mut collect,
    };
    let exec = session.execute(source, &mut ctx);
    (exec, events)
}

/// The tables among a cell's outputs.
pub fn tables(exec: &Execution) -> Vec<&Table> {
    exec.outputs
        .iter()
        .filter_map(|o| match o {
            Output::Table(t) => Some(t),
            _ => None,
        })
        .collect()
}
