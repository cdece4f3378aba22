//! `review()` against the serde_json reference, for any bytes (see
//! crates/policy/tests/fuzz_support). Seed corpus: crates/policy/fuzz/corpus/review.
#![no_main]

#[path = "../../tests/fuzz_support/mod.rs"]
mod fuzz_support;

libfuzzer_sys::fuzz_target!(|body: &[u8]| {
    let _ = fuzz_support::check(body);
});
