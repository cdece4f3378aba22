//! The decoder against the reference (see `fuzz_support`): the seed corpus, then Cluster-
//! shaped reviews from the structured generator for `EARGATE_FUZZ_SECONDS` (default 5;
//! `make test` runs 60). The long coverage-guided runs use the same property through
//! cargo-fuzz: `make fuzz`.
#![allow(clippy::unwrap_used)] // a test's panic is its failure report

mod fuzz_gen;
mod fuzz_support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use fuzz_gen::{review_body, Rng};
use fuzz_support::{check, Verdict};

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/review")
}

#[test]
fn the_seed_corpus_agrees_with_the_reference() {
    let mut n = 0;
    for entry in std::fs::read_dir(corpus_dir()).expect("the seed corpus is in the repo") {
        let path = entry.expect("a corpus entry").path();
        let body = std::fs::read(&path).expect("read a corpus file");
        let _ = check(&body);
        n += 1;
    }
    assert!(n >= 10, "the seed corpus has only {n} inputs");
}

#[test]
fn generated_reviews_agree_with_the_reference() {
    let seconds: u64 = std::env::var("EARGATE_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let seed: u64 = std::env::var("EARGATE_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    eprintln!("fuzz_review: seed {seed} (replay with EARGATE_FUZZ_SEED={seed}), {seconds} s");
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut rng = Rng::new(seed);
    let (mut same, mut refused, mut unjudged, mut lenient, mut runs) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    while Instant::now() < deadline {
        let body = review_body(&mut rng);
        match check(&body) {
            Verdict::Same => same += 1,
            Verdict::Refused => refused += 1,
            Verdict::Unjudged => unjudged += 1,
            Verdict::Lenient => lenient += 1,
        }
        runs += 1;
    }
    eprintln!(
        "fuzz_review: {runs} reviews: {same} judged alike, {refused} refused with 400, {unjudged} beyond the reference (depth, number range), {lenient} malformed only inside a skipped container"
    );
    assert!(runs > 100, "only {runs} reviews in {seconds} s");
    assert!(
        same * 5 > runs,
        "the generator mostly makes bodies the decoder refuses ({same} of {runs} judged): it tests too little"
    );
}
