//! The integration tests of the session, one module per topic, in one test binary: each
//! test binary links the whole dependency graph again, so one per crate keeps the build short.

#[path = "../common/mod.rs"]
mod common;

mod chat;
mod complete;
mod editing;
mod errors;
mod eval;
mod execute;
mod export;
mod gguf;
mod help;
mod panics;
mod parse;
mod ppl_reference;
mod roundtrip;
mod threads;
