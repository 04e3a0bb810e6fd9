//! Fuzz target: `omg_shared::fuzzing::config` (see `docs/fuzzing.md`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| omg_shared::fuzzing::config(data));
