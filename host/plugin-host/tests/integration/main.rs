//! The integration tests of the plugin host, one module per topic, in one test binary: each
//! test binary links the whole dependency graph again, so one per crate keeps the build short.

#[path = "../common/mod.rs"]
mod common;

mod bundled;
mod gay_tracer;
mod sandbox;
mod triad_checker;
mod trit_visualiser;
