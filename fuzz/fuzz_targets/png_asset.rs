//! libFuzzer entry for `tritlab_fuzz::targets::png_asset`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tritlab_fuzz::targets::png_asset::run(data));
