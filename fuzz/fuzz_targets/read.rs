//! Bytes → a whole extraction into a temporary DEST, which must stay inside it.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    arc_fuzz::check_read(data);
});
