//! docs/rules.md is generated from the rule table; this test keeps it true.
//! Regenerate with `EARGATE_BLESS=1 cargo test -p eargate-policy --test docs`.
#![allow(clippy::unwrap_used)] // a test's panic is its failure report

use std::path::PathBuf;

#[test]
fn rules_md_matches_the_rule_table() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/rules.md");
    let denials = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/kubectl-denials");
    let want = eargate_policy::rules::markdown(|rule| {
        std::fs::read_to_string(denials.join(format!("{}.txt", rule.id))).ok()
    });
    if std::env::var_os("EARGATE_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &want).unwrap();
        return;
    }
    let got = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        got == want,
        "docs/rules.md is out of date with crates/policy/src/rules.rs; run `EARGATE_BLESS=1 cargo test -p eargate-policy --test docs`"
    );
    for rule in eargate_policy::rules::ALL {
        assert!(got.contains(&format!("## {}", rule.id)));
    }
}

/// Each rule of the table maps to its check by grep: `fn earNNN_` in `policy.rs` (EAR000 in
/// `facts.rs`); EAR011 and EAR013 are guarantees the other rules keep, with no check of
/// their own.
#[test]
fn every_rule_with_a_check_has_one_function_named_by_its_id() {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let policy = std::fs::read_to_string(src.join("policy.rs")).unwrap();
    let facts = std::fs::read_to_string(src.join("facts.rs")).unwrap();
    for rule in eargate_policy::rules::ALL {
        let (text, guarantee) = match rule.id {
            "EAR000" => (&facts, false),
            "EAR011" | "EAR013" => (&policy, true),
            _ => (&policy, false),
        };
        let function = format!("fn {}_", rule.id.to_lowercase());
        let checks = text.matches(&function).count();
        if guarantee {
            assert_eq!(checks, 0, "{}: a guarantee, not a check", rule.id);
        } else if rule.id == "EAR000" {
            assert!(text.contains("rules::EAR000"), "EAR000 in facts.rs");
        } else {
            assert_eq!(checks, 1, "{}: want exactly one `{function}…`", rule.id);
            let uses = text.matches(&format!("&rules::{},", rule.id)).count();
            assert!(uses > 0, "{}: its function must report it", rule.id);
        }
    }
}
