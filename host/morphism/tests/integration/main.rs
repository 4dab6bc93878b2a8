//! The integration tests of the morphism log, one module per topic, in one test binary: each
//! test binary links the whole dependency graph again, so one per crate keeps the build short.

#[path = "../common/mod.rs"]
mod common;

mod flips;
mod log;
