//! The plugin host's WIT value conversions (`host/plugin-host/src/convert.rs`).
//!
//! Input: structured through `arbitrary`: small limits, then one conversion case. The properties
//! are in `tritlab_fuzz::plugin_convert`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tritlab_fuzz::plugin_convert::run(data));
