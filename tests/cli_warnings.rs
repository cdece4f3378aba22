//! `eargate check` and warnings: in text mode each is a `Warning:` line on stderr with the
//! text kubectl would print; with `-o json` each is `{"webhook", "id", "field", "message"}`,
//! the id from the warning table (docs/rules.md) and the message that same text.
#![allow(clippy::unwrap_used)] // a test's panic is its failure report

use std::path::{Path, PathBuf};
use std::process::Output;

use eargate_testkit::cli::{run, stderr, stdout};
use eargate_testkit::fixtures::examples_dir as examples;
use eargate_testkit::secrets::assert_no_key_material;
use eargate_testkit::webhooks::KEY_A;
use serde_json::Value;

const EARGATE: &str = env!("CARGO_BIN_EXE_eargate");

/// `eargate check args…` in `examples/`.
fn check(args: &[&str]) -> Output {
    run(EARGATE, &[&["check"], args].concat(), &examples())
}

/// `-o json`'s warnings of the only object checked.
fn json_warnings(o: &Output) -> Vec<Value> {
    let doc: Value = serde_json::from_slice(&o.stdout).expect("JSON on stdout");
    let results = doc["results"].as_array().expect("results");
    assert_eq!(results.len(), 1, "{doc}");
    results[0]["warnings"].as_array().expect("warnings").clone()
}

/// A new Cluster (the fixture without its stored state) with one resource spelled with a
/// capital and a space, and its key inline.
fn respelled_inline_cluster(dir: &Path) -> PathBuf {
    let active = std::fs::read_to_string(examples().join("cluster-active.yaml")).unwrap();
    let active = active.replace("  resourceVersion: \"48211937\"\n", "");
    let new = active[..active.find("\nstatus:\n").unwrap()]
        .replace(
            "    resources:\n    - secrets\n",
            "    resources:\n    - ' Secrets'\n",
        )
        .replace(
            "        secretRef:\n          name: encryption-key-2022-01\n          key: key",
            &format!("        value: {KEY_A}"),
        );
    assert!(new.contains("' Secrets'") && new.contains(KEY_A));
    let path = dir.join("new.yaml");
    std::fs::write(&path, format!("{new}\n")).unwrap();
    path
}

#[test]
fn json_warnings_carry_id_field_and_the_text_kubectl_prints() {
    let dir = tempfile::tempdir().unwrap();
    let path = respelled_inline_cluster(dir.path());
    let path = path.to_str().unwrap();

    let o = check(&["-f", path, "-o", "json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let warnings = json_warnings(&o);
    let got: Vec<(&str, &str, &str)> = warnings
        .iter()
        .map(|w| {
            let mut keys: Vec<&String> = w.as_object().unwrap().keys().collect();
            keys.sort();
            assert_eq!(keys, ["field", "id", "message", "webhook"], "{w}");
            (
                w["webhook"].as_str().unwrap(),
                w["id"].as_str().unwrap(),
                w["field"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                "mutate",
                "EARW02",
                "spec.encryptionConfiguration.resources[0]"
            ),
            (
                "validate",
                "EARW04",
                "spec.encryptionConfiguration.secretbox.keys[0].value"
            ),
            ("validate", "EARW05", "spec.encryptionConfiguration.enabled"),
        ]
    );
    assert_eq!(
        warnings[0]["message"],
        "spec.encryptionConfiguration.resources[0]: \" Secrets\" written as \"secrets\" (kube-apiserver needs plural, lowercase names without spaces)"
    );
    assert_no_key_material(&[KEY_A], [("stdout", stdout(&o))]);

    // Text mode: the same texts, one `Warning:` line each on stderr, none on stdout.
    let t = check(&["-f", path]);
    assert_eq!(t.status.code(), Some(0), "{}", stderr(&t));
    let err = stderr(&t);
    let lines: Vec<&str> = err.lines().collect();
    let want: Vec<String> = warnings
        .iter()
        .map(|w| format!("Warning: {path}: {}", w["message"].as_str().unwrap()))
        .collect();
    assert_eq!(lines, want);
    assert!(!stdout(&t).contains("Warning"), "{}", stdout(&t));
    assert!(!err.contains("EARW"), "{err}");
    assert_no_key_material(&[KEY_A], [("stderr", &err)]);
}

#[test]
fn an_edit_names_the_key_it_is_about() {
    let o = check(&[
        "--old",
        "cluster-active.yaml",
        "-f",
        "rotation-1-add-secondary.yaml",
        "-o",
        "json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let warnings = json_warnings(&o);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(warnings[0]["webhook"], "validate");
    assert_eq!(warnings[0]["id"], "EARW07");
    assert_eq!(
        warnings[0]["field"],
        "spec.encryptionConfiguration.secretbox.keys[1]"
    );
    assert_eq!(
        warnings[0]["message"],
        "key \"encryption-key-2022-02\" added as a secondary key: the API servers will be able to decrypt with it; once the phase is Active, move it to keys[0] to make it the primary key"
    );
}
