//! `eargate check` end to end: the built binary on the fixtures in examples/.
#![allow(clippy::unwrap_used)] // a test's panic is its failure report

use std::path::{Path, PathBuf};
use std::process::Output;

use eargate_testkit::cli::{run, run_with_stdin, stderr, stdout};
use eargate_testkit::fixtures::examples_dir as examples;
use eargate_testkit::secrets::assert_no_key_material;
use eargate_testkit::webhooks::{KEY_16, KEY_A};
use serde_json::Value;

const EARGATE: &str = env!("CARGO_BIN_EXE_eargate");

/// `eargate check args…` in `examples/`.
fn check(args: &[&str]) -> Output {
    run(EARGATE, &[&["check"], args].concat(), &examples())
}

/// The verdict of the only object checked, from `-o json`.
fn first(o: &Output) -> Value {
    let doc: Value = serde_json::from_slice(&o.stdout).expect("JSON output");
    let results = doc["results"].as_array().expect("results");
    assert_eq!(results.len(), 1, "{doc}");
    assert_eq!(doc["verdict"], results[0]["verdict"], "{doc}");
    results[0].clone()
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
        out.contains("cluster-remove-active-key.yaml: denied: update cluster.kubermatic.k8c.io/zt7q9h2mxk (offline check, as the webhook \"validate.eargate.k8c.io\" would deny it): Cluster \"zt7q9h2mxk\": 2 problems"),
        "{out}"
    );
    // No server was involved: nothing may read like one answered.
    assert!(!out.contains("Error from server"), "{out}");
    assert!(out.contains("- [EAR009] spec.encryptionConfiguration.secretbox.keys[0]: key \"encryption-key-2022-02\""), "{out}");
    assert!(out.contains("- [EAR010] spec.encryptionConfiguration.secretbox.keys: key \"encryption-key-2022-01\""), "{out}");
}

#[test]
fn the_whole_review_file_gives_the_same_verdict_in_json() {
    let o = check(&["--new", "review-remove-active-key.json", "--output", "json"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let v = first(&o);
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
    let text = fresh(&std::fs::read_to_string(examples().join("cluster-active.yaml")).unwrap());
    let text = text.replace(
        "    resources:\n    - secrets\n    secretbox:",
        "    secretbox:",
    );
    let path = dir.path().join("new.yaml");
    std::fs::write(&path, text).unwrap();
    let o = check(&["--new", path.to_str().unwrap(), "--output", "json"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let v = first(&o);
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
        stderr(&o).contains(
            "error: does-not-exist.yaml: cannot read the file: no such file or directory"
        ),
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
    let text = fresh(&std::fs::read_to_string(examples().join("cluster-active.yaml")).unwrap());
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
    let material = KEY_16; // 16 bytes: denied by EAR004
    let good = KEY_A;
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
        assert_no_key_material(&[material, good], [(output, all)]);
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
        let v = first(&o);
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
    let v = first(&o);
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

/// [`check`] with `input` on stdin.
fn check_stdin(args: &[&str], input: &str) -> Output {
    run_with_stdin(EARGATE, &[&["check"], args].concat(), &examples(), input)
}

/// Exit 2, nothing on stdout reads "allowed", and stderr says `want`.
fn refused(o: &Output, want: &[&str]) {
    let (out, err) = (stdout(o), stderr(o));
    assert_eq!(o.status.code(), Some(2), "{out}{err}");
    assert!(!out.contains("allowed:"), "{out}");
    for w in want {
        assert!(err.contains(w), "want {w:?} in:\n{err}");
    }
}

/// `examples/cluster-active.yaml` as a fresh manifest (no resourceVersion, no status).
fn fresh(text: &str) -> String {
    let text = text.replace("  resourceVersion: \"48211937\"\n", "");
    let at = text.find("\nstatus:\n").expect("the fixture has a status");
    format!("{}\n", &text[..at])
}

#[test]
fn a_secret_is_refused_with_what_to_pass_instead() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key.yaml");
    std::fs::write(
        &path,
        "apiVersion: v1\nkind: Secret\nmetadata: {name: k1}\nstringData: {key: x}\n",
    )
    .unwrap();
    let o = check(&["-f", path.to_str().unwrap()]);
    refused(
        &o,
        &["is a Secret, not a Cluster", "Pass the Cluster with -f"],
    );
}

#[test]
fn the_old_api_group_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(examples().join("cluster-active.yaml")).unwrap();
    let path = dir.path().join("old-group.yaml");
    std::fs::write(
        &path,
        fresh(&text).replace("kubermatic.k8c.io/v1", "kubermatic.k8s.io/v1"),
    )
    .unwrap();
    let o = check(&["--new", path.to_str().unwrap()]);
    refused(
        &o,
        &[
            "apiVersion kubermatic.k8s.io/v1, Kubermatic's old API group",
            "write apiVersion: kubermatic.k8c.io/v1",
        ],
    );
}

#[test]
fn a_list_of_stored_clusters_is_refused_and_fresh_items_are_judged() {
    // What `kubectl get clusters -o yaml` prints: stored objects, with resourceVersion.
    let text = std::fs::read_to_string(examples().join("cluster-active.yaml")).unwrap();
    let stored: serde_json::Value = serde_yaml::from_str(&text).unwrap();
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": [stored]});
    let o = check_stdin(&["-f", "-"], &serde_json::to_string(&list).unwrap());
    refused(
        &o,
        &[
            "stdin#items[0]",
            "is a stored object",
            "--old",
            "eargate check --cluster zt7q9h2mxk",
        ],
    );
    // Manifests as a repository keeps them: each item judged.
    let fresh: serde_json::Value = serde_yaml::from_str(&fresh(&text)).unwrap();
    let mut second = fresh.clone();
    second["metadata"]["name"] = "second".into();
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": [fresh, second]});
    let o = check_stdin(&["-f", "-"], &serde_yaml::to_string(&list).unwrap());
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("stdin#items[0]: allowed: create cluster.kubermatic.k8c.io/zt7q9h2mxk")
            && out.contains("stdin#items[1]: allowed: create cluster.kubermatic.k8c.io/second")
            && out.contains("2 objects: 2 allowed, 0 denied, 0 not checked"),
        "{out}"
    );
}

#[test]
fn a_stored_object_without_old_is_not_judged_as_a_create() {
    let o = check(&["--new", "cluster-remove-active-key.yaml"]);
    refused(
        &o,
        &[
            "Cluster \"zt7q9h2mxk\" is a stored object (it has metadata.resourceVersion and status.encryption)",
            "Pass the stored object with --old and the edited one with -f",
        ],
    );
}

#[test]
fn old_must_be_the_same_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret.yaml");
    std::fs::write(
        &secret,
        "apiVersion: v1\nkind: Secret\nmetadata: {name: zt7q9h2mxk}\n",
    )
    .unwrap();
    let o = check(&[
        "--old",
        secret.to_str().unwrap(),
        "-f",
        "rotation-1-add-secondary.yaml",
    ]);
    refused(&o, &["--old", "is a Secret, not a Cluster"]);
    let text = std::fs::read_to_string(examples().join("cluster-active.yaml")).unwrap();
    let other = dir.path().join("other.yaml");
    std::fs::write(
        &other,
        text.replace("name: zt7q9h2mxk", "name: someone-else"),
    )
    .unwrap();
    let o = check(&[
        "--old",
        other.to_str().unwrap(),
        "-f",
        "rotation-1-add-secondary.yaml",
    ]);
    refused(
        &o,
        &[
            "--old is Cluster \"someone-else\" but -f is Cluster \"zt7q9h2mxk\"",
            "stored version",
        ],
    );
}

#[test]
fn an_unknown_subresource_is_refused() {
    let o = check(&[
        "--old",
        "cluster-active.yaml",
        "-f",
        "rotation-1-add-secondary.yaml",
        "--subresource",
        "stauts",
    ]);
    refused(&o, &["'stauts'", "possible values: status"]);
    // And the status subresource needs the stored object.
    let o = check(&[
        "-f",
        "rotation-1-add-secondary.yaml",
        "--subresource",
        "status",
    ]);
    refused(&o, &["--subresource status judges an UPDATE", "--old"]);
}

#[test]
fn an_update_review_without_old_object_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut review: Value = serde_json::from_str(
        &std::fs::read_to_string(examples().join("review-remove-active-key.json")).unwrap(),
    )
    .unwrap();
    review["request"]
        .as_object_mut()
        .unwrap()
        .remove("oldObject");
    let path = dir.path().join("review.json");
    std::fs::write(&path, review.to_string()).unwrap();
    let o = check(&["-f", path.to_str().unwrap()]);
    refused(
        &o,
        &["an UPDATE without request.oldObject", "--old STORED.yaml"],
    );
    // A review for another kind is not "allowed, unchecked" either.
    review = serde_json::from_str(
        &std::fs::read_to_string(examples().join("review-remove-active-key.json")).unwrap(),
    )
    .unwrap();
    review["request"]["kind"] = serde_json::json!({"group": "", "version": "v1", "kind": "Secret"});
    std::fs::write(&path, review.to_string()).unwrap();
    let o = check(&["-f", path.to_str().unwrap()]);
    refused(
        &o,
        &["the AdmissionReview is for Secret.", "nothing was checked"],
    );
    assert!(!stderr(&o).contains("unchecked"), "{}", stderr(&o));
}

#[test]
fn warnings_go_to_stderr_once_each() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(examples().join("cluster-active.yaml")).unwrap();
    let path = dir.path().join("new.yaml");
    std::fs::write(
        &path,
        fresh(&text).replace(
            "    resources:\n    - secrets\n    secretbox:",
            "    secretbox:",
        ),
    )
    .unwrap();
    let o = check(&["-f", path.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let err = stderr(&o);
    assert_eq!(err.matches("defaulted to [secrets]").count(), 1, "{err}");
    assert_eq!(
        err.matches("enabling encryption at rest").count(),
        1,
        "{err}"
    );
    assert!(err.starts_with("Warning: "), "{err}");
    assert!(!stdout(&o).contains("Warning"), "{}", stdout(&o));
    // In JSON, warnings carry the webhook and the field they are about.
    let o = check(&["-f", path.to_str().unwrap(), "-o", "json"]);
    let v = first(&o);
    let warnings = v["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 2, "{v}");
    assert_eq!(warnings[0]["webhook"], "mutate");
    assert_eq!(
        warnings[0]["field"],
        "spec.encryptionConfiguration.resources"
    );
}

#[test]
fn a_fleet_directory_gets_one_verdict_per_cluster_and_the_worst_exit_code() {
    let o = check(&["-f", "fleet"]);
    let (out, err) = (stdout(&o), stderr(&o));
    assert_eq!(o.status.code(), Some(2), "{out}{err}");
    for want in [
        "fleet/data-team.yaml#1: allowed: create cluster.kubermatic.k8c.io/analytics",
        "fleet/data-team.yaml#2: denied: create cluster.kubermatic.k8c.io/ml-training",
        "- [EAR001]",
        "fleet/payments-prod.yaml: allowed: create cluster.kubermatic.k8c.io/payments-prod",
        "fleet/payments-staging.yaml: allowed: create cluster.kubermatic.k8c.io/payments-staging",
        "mutated (defaults)",
        "6 objects: 3 allowed, 1 denied, 1 not checked (errors), 1 skipped (not Clusters)",
    ] {
        assert!(out.contains(want), "want {want:?} in:\n{out}");
    }
    assert!(
        err.contains(
            "error: fleet/legacy/edge-1.yaml: the object has apiVersion kubermatic.k8s.io/v1"
        ),
        "{err}"
    );
    assert!(
        err.contains("skipped: fleet/payments-prod-key.yaml: a Secret, not a Cluster"),
        "{err}"
    );
    // Without the legacy file: the denial decides.
    let o = check(&[
        "-f",
        "fleet/payments-prod.yaml",
        "-f",
        "fleet/data-team.yaml",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    // One JSON document with every verdict.
    let o = check(&["-f", "fleet", "-o", "json"]);
    assert_eq!(o.status.code(), Some(2));
    let doc: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["verdict"], "error");
    assert_eq!(doc["exitCode"], 2);
    assert_eq!(
        doc["counts"],
        serde_json::json!({"allowed": 3, "denied": 1, "error": 1, "skipped": 1})
    );
    let results = doc["results"].as_array().unwrap();
    let legacy = results
        .iter()
        .find(|r| r["source"] == "fleet/legacy/edge-1.yaml")
        .unwrap();
    assert_eq!(legacy["verdict"], "error");
    assert!(legacy["error"]["message"]
        .as_str()
        .unwrap()
        .contains("old API group"));
    assert!(o.stderr.is_empty(), "{}", stderr(&o));
}

#[test]
fn input_errors_are_json_on_stdout_in_json_mode() {
    let o = check(&["-f", "does-not-exist.yaml", "-o", "json"]);
    assert_eq!(o.status.code(), Some(2));
    let v = first(&o);
    assert_eq!(v["verdict"], "error");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("cannot read the file"));
    assert_eq!(v["source"], "does-not-exist.yaml");
    // An error of the whole command is one document too.
    let o = check(&["--old", "cluster-active.yaml", "-f", "fleet", "-o", "json"]);
    assert_eq!(o.status.code(), Some(2));
    let v: Value = serde_json::from_slice(&o.stdout).expect("JSON on stdout");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--old pairs with one edited object"),
        "{v}"
    );
    assert_eq!(v["exitCode"], 2);
}
