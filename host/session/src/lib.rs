//! tritlab-session: what a tritlab session understands, independent of how it is shown.
//!
//! [`lang`] is the command language: parsing lines into typed [`Command`]s, `help`, completion,
//! hints and highlighting for the terminal REPL and the desktop workbench alike.

pub mod lang;

pub use lang::{complete, highlight, hint, is_complete, parse, parse_script, Command, ParseError};
