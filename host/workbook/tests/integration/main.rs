//! The integration tests of the workbook crate, one module per topic, in one test binary: each
//! test binary links the whole dependency graph again, so one per crate keeps the build short.

#[path = "../common/mod.rs"]
mod common;

mod export;
mod export_bounds;
mod files;
mod fuzz_regressions;
mod hostile_files;
mod ipynb_validate;
mod malformed;
mod roundtrip;
mod run;
mod spec;
