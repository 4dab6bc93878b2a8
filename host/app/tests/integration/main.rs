//! The integration tests of the `tritlab` binary, one module per topic, in one test binary: each
//! test binary links the whole dependency graph again, so one per crate keeps the build short.

mod architecture;
mod cli;
mod faces;
mod repl;
mod run;
mod serve;
mod train_cli;
