//! libFuzzer entry for `tritlab_fuzz::targets::command_lang`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tritlab_fuzz::targets::command_lang::run(data));
