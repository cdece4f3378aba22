//! What every subcommand shares: exit codes in `--help`, `-o` where a result is printed,
//! shell completion, and the small tools' defaults (`keygen`, `certs`, `render`).
#![allow(clippy::unwrap_used)] // a test's panic is its failure report

use std::path::Path;
use std::process::{Command, Output};

use eargate_testkit::cli::{run, stderr as err, stdout as out};
use eargate_testkit::fixtures::examples_dir as examples;
use serde_json::Value;

/// `eargate args…` run in `dir`.
fn eargate(args: &[&str], dir: &Path) -> Output {
    run(env!("CARGO_BIN_EXE_eargate"), args, dir)
}

const SUBCOMMANDS: [&str; 10] = [
    "keygen",
    "reconcile",
    "check",
    "render",
    "verify",
    "reencrypt",
    "serve",
    "certs",
    "crd",
    "completion",
];

#[test]
fn help_lists_the_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        vec!["--help"],
        vec!["verify", "--help"],
        vec!["check", "--help"],
    ] {
        let o = eargate(&args, dir.path());
        assert!(o.status.success());
        let help = out(&o);
        assert!(help.contains("Exit codes"), "{args:?}: {help}");
        assert!(help.contains("  2  "), "{args:?}: {help}");
    }
}

#[test]
fn completion_scripts_name_every_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish"] {
        let o = eargate(&["completion", shell], dir.path());
        assert!(o.status.success(), "{shell}: {}", err(&o));
        let script = out(&o);
        for sub in SUBCOMMANDS {
            assert!(script.contains(sub), "{shell}: no {sub} in the script");
        }
        // Flags of a subcommand are completed too.
        assert!(script.contains("filename"), "{shell}");
    }
    // bash accepts the script (syntax check, no execution).
    let o = eargate(&["completion", "bash"], dir.path());
    let path = dir.path().join("eargate.bash");
    std::fs::write(&path, &o.stdout).unwrap();
    let bash = Command::new("bash").arg("-n").arg(&path).output().unwrap();
    assert!(bash.status.success(), "bash -n: {}", err(&bash));
    // The kubectl plugin's name.
    let o = eargate(
        &["completion", "bash", "--name", "kubectl-eargate"],
        dir.path(),
    );
    assert!(out(&o).contains("kubectl-eargate"), "{}", out(&o));
}

#[test]
fn keygen_prints_the_secret_on_stdout_and_the_secret_ref_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let o = eargate(
        &[
            "keygen",
            "--secret-name",
            "k-2026-01",
            "--namespace",
            "cluster-abc",
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", err(&o));
    let secret: Value = serde_yaml::from_str(&out(&o)).expect("a YAML manifest on stdout");
    assert_eq!(secret["kind"], "Secret");
    assert_eq!(secret["metadata"]["namespace"], "cluster-abc");
    let key = secret["stringData"]["key"].as_str().unwrap().to_owned();
    assert_eq!(key.len(), 44);
    let snippet = err(&o);
    assert!(
        snippet.contains("- name: k-2026-01\n  secretRef:\n    name: k-2026-01\n    key: key"),
        "{snippet}"
    );
    assert!(!snippet.contains(&key), "key material on stderr");
    let o = eargate(&["keygen", "-o", "json"], dir.path());
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["key"].as_str().unwrap().len(), 44);
    let o = eargate(
        &["keygen", "--secret-name", "k1", "--namespace", "Bad_NS"],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(err(&o).contains("DNS-1123 label"), "{}", err(&o));
}

#[test]
fn certs_default_to_local_and_the_charts_service_names() {
    let dir = tempfile::tempdir().unwrap();
    let o = eargate(&["certs", "--out-dir", "c", "-o", "json"], dir.path());
    assert!(o.status.success(), "{}", err(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        v["names"],
        serde_json::json!([
            "localhost",
            "eargate-webhook.eargate-system.svc",
            "127.0.0.1"
        ])
    );
    assert!(dir.path().join("c/tls.key").exists());
    // A second run refuses to overwrite, and names the flag that would.
    let o = eargate(&["certs", "--out-dir", "c"], dir.path());
    assert_eq!(o.status.code(), Some(2));
    assert!(err(&o).contains("--force"), "{}", err(&o));
}

#[test]
fn render_says_in_the_yaml_when_it_is_step_one_of_two() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("key.yaml"),
        "apiVersion: v1\nkind: Secret\nmetadata: {name: payments-prod-2026-01}\nstringData: {key: QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY=}\n",
    )
    .unwrap();
    let cluster = examples().join("fleet/payments-prod.yaml");
    let cluster = cluster.to_str().unwrap();
    let o = eargate(
        &["render", "-f", cluster, "--secret", "key.yaml"],
        dir.path(),
    );
    assert!(o.status.success(), "{}", err(&o));
    let yaml = out(&o);
    assert!(yaml.starts_with("# writer: identity;"), "{yaml}");
    assert!(
        yaml.contains("# step 1 of 2: the writer stays identity, so every API server learns key \"payments-prod-2026-01\" before anything is written with it"),
        "{yaml}"
    );
    assert!(yaml.contains("REDACTED"), "{yaml}");
    // Step 2: with the real config of step 1 as --previous, the key writes; no note.
    let o = eargate(
        &[
            "render",
            "-f",
            cluster,
            "--secret",
            "key.yaml",
            "--show-keys",
        ],
        dir.path(),
    );
    std::fs::write(dir.path().join("step1.yaml"), &o.stdout).unwrap();
    let o = eargate(
        &[
            "render",
            "--cluster",
            cluster,
            "--secret",
            "key.yaml",
            "--previous",
            "step1.yaml",
            "-o",
            "json",
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", err(&o));
    let v: Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(v["kind"], "EncryptionConfiguration");
    assert!(
        v["resources"][0]["providers"][0]["secretbox"].is_object(),
        "{v}"
    );
    assert!(!err(&o).contains("step 1 of 2"), "{}", err(&o));
}

/// A key the spec no longer names stays in the rendered config (the reconciler keeps it until
/// its storage scan finds nothing sealed with it), and the output says so.
#[test]
fn render_says_in_the_yaml_which_removed_key_it_keeps() {
    let dir = tempfile::tempdir().unwrap();
    let (new, old) = (
        "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY=",
        "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
    );
    std::fs::write(
        dir.path().join("key.yaml"),
        format!("apiVersion: v1\nkind: Secret\nmetadata: {{name: encryption-key-2022-02}}\nstringData: {{key: {new}}}\n"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("previous.yaml"),
        format!("apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n  - secretbox:\n      keys:\n      - name: encryption-key-2022-02\n        secret: {new}\n      - name: encryption-key-2022-01\n        secret: {old}\n  - identity: {{}}\n"),
    )
    .unwrap();
    let cluster = examples().join("rotation-3-remove-old.yaml");
    let args = [
        "render",
        "-f",
        cluster.to_str().unwrap(),
        "--secret",
        "key.yaml",
        "--previous",
        "previous.yaml",
    ];
    let o = eargate(&args, dir.path());
    assert!(o.status.success(), "{}", err(&o));
    let yaml = out(&o);
    assert!(
        yaml.contains("# kept: key \"encryption-key-2022-01\" is no longer in the spec: the reconciler drops a removed key only when the phase is Active and a storage scan of etcd finds nothing sealed with it (render does not scan)\n"),
        "{yaml}"
    );
    assert!(yaml.contains("name: encryption-key-2022-01"), "{yaml}");
    assert!(
        !yaml.contains(old) && !yaml.contains(new),
        "keys stay REDACTED"
    );
    let mut json = args.to_vec();
    json.extend(["-o", "json"]);
    let o = eargate(&json, dir.path());
    assert!(o.status.success(), "{}", err(&o));
    assert!(
        err(&o).contains("note: kept: key \"encryption-key-2022-01\""),
        "{}",
        err(&o)
    );
}

#[test]
fn render_refuses_a_previous_config_without_the_active_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("previous.yaml"),
        "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n  - secretbox:\n      keys:\n      - name: some-other-key\n        secret: QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY=\n  - identity: {}\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("key.yaml"),
        "apiVersion: v1\nkind: Secret\nmetadata: {name: encryption-key-2022-01}\nstringData: {key: QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY=}\n",
    )
    .unwrap();
    let cluster = examples().join("cluster-active.yaml");
    let o = eargate(
        &[
            "render",
            "-f",
            cluster.to_str().unwrap(),
            "--secret",
            "key.yaml",
            "--previous",
            "previous.yaml",
        ],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(2), "{}{}", out(&o), err(&o));
    assert!(
        err(&o).contains("previous.yaml (--previous) has no key \"encryption-key-2022-01\", but the Cluster's status.encryption.activeKey is \"secretbox/encryption-key-2022-01\""),
        "{}",
        err(&o)
    );
    assert!(out(&o).is_empty());
}

#[test]
fn durations_and_listen_addresses_read_alike_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    // The old seconds flag is gone; the duration flag takes units.
    let o = eargate(
        &[
            "verify",
            "--etcd-endpoints",
            "http://127.0.0.1:1",
            "--encryption-config",
            "x",
            "--timeout-seconds",
            "2",
        ],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(err(&o).contains("--timeout-seconds"), "{}", err(&o));
    let o = eargate(
        &[
            "verify",
            "--etcd-endpoints",
            "http://127.0.0.1:1",
            "--encryption-config",
            "x",
            "--timeout",
            "soon",
        ],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        err(&o).contains("write it like 15m, 10s or 500ms"),
        "{}",
        err(&o)
    );
    let o = eargate(
        &[
            "serve",
            "--tls-cert-file",
            "c",
            "--tls-key-file",
            "k",
            "--listen",
            "8443",
        ],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(err(&o).contains("write it like :8443"), "{}", err(&o));
}
