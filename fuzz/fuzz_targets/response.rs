//! Fuzz target: `omg_dataplane::fuzzing::response` (see `docs/fuzzing.md`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| omg_dataplane::fuzzing::response(data));
