//! libFuzzer entry for `tritlab_fuzz::targets::train_run_json`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tritlab_fuzz::targets::train_run_json::run(data));
