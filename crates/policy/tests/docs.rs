//! docs/rules.md is generated from the rule table; this test keeps it true.
//! Regenerate with `EARGATE_BLESS=1 cargo test -p eargate-policy --test docs`.

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
