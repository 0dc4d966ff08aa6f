//! Bytes → header, trailer and index parsers, and the checked `Index` built from them.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    arc_fuzz::check_index(data);
});
