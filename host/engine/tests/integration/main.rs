//! The integration tests of the engine, one module per topic, in one test binary: each
//! test binary links the whole dependency graph again, so one per crate keeps the build short.

#[path = "../common/mod.rs"]
mod common;

mod batch;
mod chat;
mod errors;
mod fuzz_regressions;
mod gguf;
mod head;
mod model;
mod packing;
mod parity;
mod reference_forward;
mod verify;
