//! libFuzzer entry for `tritlab_fuzz::targets::tokenizer`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: {
        // The engine turns a panic inside `tokenizers` into an error with `catch_unwind`;
        // libfuzzer-sys's panic hook would abort on that caught panic. With the default hook a
        // caught panic is an error and an uncaught one still aborts (libfuzzer-sys catches it
        // around each input).
        let _ = std::panic::take_hook();
    },
    |data: &[u8]| tritlab_fuzz::targets::tokenizer::run(data)
);
