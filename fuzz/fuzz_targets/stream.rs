//! Bytes → an extraction read as from a pipe (`arc read -`) into a temporary DEST, which must
//! stay inside it and, when the archive also extracts from its file, give the same entries.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    arc_fuzz::check_stream(data);
});
