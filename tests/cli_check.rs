//! `eargate check` end to end: the built binary on the fixtures in examples/.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

fn check(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_eargate"))
        .arg("check")
        .args(args)
        .current_dir(examples())
        .output()
        .expect("run eargate")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn removing_the_active_key_is_denied_like_kubectl_shows_it() {
    let o = check(&[
        "--old",
        "cluster-active.yaml",
        "--new",
        "cluster-remove-active-key.yaml",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("Error from server (Forbidden): admission webhook \"validate.eargate.k8c.io\" denied the request: Cluster \"zt7q9h2mxk\": 2 problems"),
        "{out}"
    );
    assert!(out.contains("- [EAR009] spec.encryptionConfiguration.secretbox.keys[0]: key \"encryption-key-2022-02\""), "{out}");
    assert!(out.contains("- [EAR010] spec.encryptionConfiguration.secretbox.keys: key \"encryption-key-2022-01\""), "{out}");
}

#[test]
fn the_whole_review_file_gives_the_same_verdict_in_json() {
    let o = check(&["--new", "review-remove-active-key.json", "--output", "json"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).expect("JSON output");
    assert_eq!(v["verdict"], "denied");
    assert_eq!(v["rules"], serde_json::json!(["EAR009", "EAR010"]));
    let violations = v["violations"].as_array().unwrap();
    assert_eq!(violations.len(), 2);
    assert_eq!(violations[1]["rule"], "EAR010");
    assert_eq!(
        violations[1]["field"],
        "spec.encryptionConfiguration.secretbox.keys"
    );
    assert_eq!(violations[1]["key"], "encryption-key-2022-01");
    assert!(v["patch"].is_null());
    assert!(v["warnings"].as_array().is_some());
}

#[test]
fn the_documented_rotation_is_allowed_step_by_step() {
    for (old, new) in [
        ("cluster-active.yaml", "rotation-1-add-secondary.yaml"),
        ("rotation-1-add-secondary.yaml", "rotation-2-promote.yaml"),
        ("rotation-2-done.yaml", "rotation-3-remove-old.yaml"),
    ] {
        let o = check(&["--old", old, "--new", new]);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{old} -> {new}: {}{}",
            stdout(&o),
            stderr(&o)
        );
        assert!(stdout(&o).contains("allowed: update cluster.kubermatic.k8c.io/zt7q9h2mxk"));
    }
    // Too early: removing the old key while Secrets are re-written.
    let o = check(&[
        "--old",
        "rotation-2-reencrypting.yaml",
        "--new",
        "rotation-3-remove-old.yaml",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("[EAR006]"));
}

#[test]
fn create_gets_defaults_and_the_patch_in_json() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(examples().join("cluster-active.yaml")).unwrap();
    let text = text.replace(
        "    resources:\n    - secrets\n    secretbox:",
        "    secretbox:",
    );
    let path = dir.path().join("new.yaml");
    std::fs::write(&path, text).unwrap();
    let o = check(&["--new", path.to_str().unwrap(), "--output", "json"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["verdict"], "allowed");
    assert_eq!(v["operation"], "CREATE");
    assert_eq!(v["patch"][0]["op"], "add");
    assert_eq!(
        v["patch"][0]["path"],
        "/spec/encryptionConfiguration/resources"
    );
    assert!(v["warnings"].to_string().contains("defaulted to [secrets]"));
}

#[test]
fn status_subresource_edits_by_users_are_denied() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(examples().join("cluster-active.yaml")).unwrap();
    let path = dir.path().join("new.yaml");
    std::fs::write(
        &path,
        text.replace("    phase: Active\n", "    phase: Pending\n"),
    )
    .unwrap();
    let args = [
        "--old",
        "cluster-active.yaml",
        "--new",
        path.to_str().unwrap(),
        "--subresource",
        "status",
    ];
    let o = check(&[&args[..], &["--user", "jane@example.com"]].concat());
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stdout(&o).contains("[EAR014]"));
    let o = check(
        &[
            &args[..],
            &[
                "--user",
                "system:serviceaccount:eargate-system:eargate-reconciler",
            ],
        ]
        .concat(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
}

#[test]
fn bad_input_exits_2_with_the_failing_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.yaml");
    std::fs::write(
        &path,
        "apiVersion: kubermatic.k8c.io/v1\nkind: Cluster\nspec:\n  features: [\n  x: y\n",
    )
    .unwrap();
    let o = check(&["--new", path.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.contains("invalid YAML at line"), "{err}");
    let o = check(&["--new", "does-not-exist.yaml"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("cannot read does-not-exist.yaml"),
        "{}",
        stderr(&o)
    );
    std::fs::write(&path, "- a\n- b\n").unwrap();
    let o = check(&["--new", path.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("expected a Cluster or an AdmissionReview"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn wrongly_typed_encryption_fields_are_a_denial_not_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(examples().join("cluster-active.yaml")).unwrap();
    let path = dir.path().join("new.yaml");
    std::fs::write(
        &path,
        text.replace(
            "    enabled: true\n    resources:",
            "    enabled: \"yes\"\n    resources:",
        ),
    )
    .unwrap();
    let o = check(&["--new", path.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("[EAR000] spec.encryptionConfiguration.enabled: must be a boolean"));
}

#[test]
fn no_key_material_in_text_or_json_output() {
    let dir = tempfile::tempdir().unwrap();
    let material = "c2l4dGVlbi1ieXRlcy1rZQ=="; // 16 bytes: denied by EAR004
    let good = "3q2+7wF9aZr8Xk1cQ4mV0pLsT6uYbN2eH5gJ8dK1fWo=";
    let text = std::fs::read_to_string(examples().join("cluster-active.yaml")).unwrap();
    let inline = |v: &str| {
        text.replace(
            "        secretRef:\n          name: encryption-key-2022-01\n          key: key\n",
            &format!("        value: {v}\n"),
        )
    };
    let old = dir.path().join("old.yaml");
    let new = dir.path().join("new.yaml");
    std::fs::write(&old, inline(good)).unwrap();
    std::fs::write(&new, inline(material)).unwrap();
    for output in ["text", "json"] {
        let o = check(&[
            "--old",
            old.to_str().unwrap(),
            "--new",
            new.to_str().unwrap(),
            "--output",
            output,
        ]);
        assert_eq!(o.status.code(), Some(1));
        let all = format!("{}{}", stdout(&o), stderr(&o));
        assert!(all.contains("EAR004") && all.contains("EAR008"), "{all}");
        for secret in [material, good] {
            for w in secret.as_bytes().windows(8) {
                let w = std::str::from_utf8(w).unwrap();
                assert!(
                    !all.contains(w),
                    "{output}: key material {w:?} leaked:\n{all}"
                );
            }
        }
    }
}

/// `examples/cluster-active.yaml` with its `resources: [secrets]` replaced.
fn with_resources(dir: &Path, file: &str, resources: &str) -> PathBuf {
    let text = std::fs::read_to_string(examples().join("cluster-active.yaml")).unwrap();
    let edited = text.replace(
        "    resources:\n    - secrets\n",
        &format!("    resources: {resources}\n"),
    );
    assert_ne!(edited, text, "the fixture's resources list moved");
    let path = dir.join(file);
    std::fs::write(&path, edited).unwrap();
    path
}

#[test]
fn validate_only_judges_the_list_as_written() {
    let dir = tempfile::tempdir().unwrap();
    for (file, resources, want) in [
        (
            "capitals.yaml",
            "[Secrets]",
            "- [EAR005] spec.encryptionConfiguration.resources[0]: \"Secrets\": resource name should not contain capital letters",
        ),
        (
            "duplicates.yaml",
            "[secrets, secrets]",
            "- [EAR005] spec.encryptionConfiguration.resources[1]: \"secrets\": duplicates resources[0]",
        ),
        (
            "whitespace.yaml",
            "[\" secrets\"]",
            "- [EAR005] spec.encryptionConfiguration.resources[0]: \" secrets\": surrounding whitespace",
        ),
    ] {
        let new = with_resources(dir.path(), file, resources);
        let new = new.to_str().unwrap();
        // Both webhooks, as the chart installs them: rewritten by the mutating webhook, allowed.
        let o = check(&["--old", "cluster-active.yaml", "--new", new]);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{resources}: {}{}",
            stdout(&o),
            stderr(&o)
        );
        let out = stdout(&o);
        assert!(out.contains("mutated (defaults): "), "{out}");
        // The validating webhook alone: denied, pointing at the mutating webhook.
        let o = check(&["--validate-only", "--old", "cluster-active.yaml", "--new", new]);
        assert_eq!(
            o.status.code(),
            Some(1),
            "{resources}: {}{}",
            stdout(&o),
            stderr(&o)
        );
        let out = stdout(&o);
        assert!(out.contains(want), "{out}");
        assert!(
            out.contains("the mutating webhook mutate.eargate.k8c.io normally")
                && out.contains("is it installed"),
            "{out}"
        );
        assert!(!out.contains("mutated (defaults)"), "{out}");
        // The same in JSON: no patch, only the validating webhook ran.
        let o = check(&[
            "--validate-only",
            "--old",
            "cluster-active.yaml",
            "--new",
            new,
            "--output",
            "json",
        ]);
        assert_eq!(o.status.code(), Some(1));
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["verdict"], "denied");
        assert_eq!(v["rules"], serde_json::json!(["EAR005"]));
        assert_eq!(v["webhooks"], serde_json::json!(["validate"]));
        assert!(v["patch"].is_null());
    }
}

#[test]
fn validate_only_reads_no_resources_as_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(examples().join("cluster-active.yaml")).unwrap();
    let path = dir.path().join("new.yaml");
    std::fs::write(&path, text.replace("    resources:\n    - secrets\n", "")).unwrap();
    let o = check(&[
        "--validate-only",
        "--old",
        "cluster-active.yaml",
        "--new",
        path.to_str().unwrap(),
        "--output",
        "json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["verdict"], "allowed");
    assert!(v["patch"].is_null());
    // The documented rotation passes the validating webhook alone too: the examples are
    // written the way the mutating webhook leaves them.
    let o = check(&[
        "--validate-only",
        "--old",
        "cluster-active.yaml",
        "--new",
        "rotation-1-add-secondary.yaml",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
}
