//! libFuzzer entry for `tritlab_fuzz::targets::morphism_log`, with a mutator that repairs the
//! header and checksums after libFuzzer's mutation (seven times in eight).
#![no_main]

use libfuzzer_sys::{fuzz_mutator, fuzz_target};
use tritlab_fuzz::targets::morphism_log::{repair, run};

fuzz_mutator!(|data: &mut [u8], size: usize, max_size: usize, seed: u32| {
    let size = libfuzzer_sys::fuzzer_mutate(data, size, max_size);
    if !seed.is_multiple_of(8) {
        repair(&mut data[..size], seed >> 3);
    }
    size
});

fuzz_target!(|data: &[u8]| run(data));
