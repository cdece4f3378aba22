//! The error texts of the command line, held to golden files in tests/golden/: each names
//! the flag, file, endpoint or kubeconfig involved, states each cause once, on its own
//! line, and never shows `Debug` output. `EARGATE_BLESS=1` rewrites the golden files.
#![allow(clippy::unwrap_used)] // a test's panic is its failure report

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use eargate_testkit::fixtures::examples_dir;

fn eargate(args: &[&str], dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_eargate"));
    c.args(args)
        .current_dir(dir)
        .env_remove("KUBECONFIG")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env("HOME", dir)
        .env("NO_COLOR", "1");
    c
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// Checks stderr (or stdout for `-o json`) against `tests/golden/<name>.txt`, with the
/// temporary directory and ports replaced by placeholders.
fn golden(name: &str, o: &Output, stream: &str, replace: &[(&str, &str)]) {
    assert_eq!(
        o.status.code(),
        Some(2),
        "{name}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let bytes = if stream == "stdout" {
        &o.stdout
    } else {
        &o.stderr
    };
    let mut text = String::from_utf8_lossy(bytes).into_owned();
    for (from, to) in replace {
        text = text.replace(from, to);
    }
    assert_clean(name, &text);
    let path = golden_dir().join(format!("{name}.txt"));
    if std::env::var_os("EARGATE_BLESS").is_some() {
        std::fs::write(&path, &text).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (EARGATE_BLESS=1 writes it)", path.display()));
    assert_eq!(
        text,
        want,
        "{name}: the error text changed (EARGATE_BLESS=1 rewrites {})",
        path.display()
    );
}

/// No cause twice, no Debug output.
fn assert_clean(name: &str, text: &str) {
    for debug in [
        "{ ",
        "Some(",
        "Status {",
        "MetadataMap",
        "ErrorResponse",
        "Custom {",
        "kind: ",
    ] {
        assert!(
            !text.contains(debug),
            "{name}: Debug output ({debug:?}) in:\n{text}"
        );
    }
    let causes: Vec<&str> = text
        .lines()
        .map(|l| {
            l.trim_start()
                .trim_start_matches("error: ")
                .trim_start_matches("cause: ")
        })
        .filter(|l| !l.is_empty())
        .collect();
    for (i, a) in causes.iter().enumerate() {
        for (j, b) in causes.iter().enumerate() {
            if i != j && a.len() > 12 && b.contains(a) {
                panic!("{name}: {a:?} is stated twice in:\n{text}");
            }
        }
        // "X: X" within one line.
        if let Some((head, tail)) = a.split_once(": ") {
            assert!(
                !tail.contains(head) || head.len() < 12,
                "{name}: doubled cause in {a:?}"
            );
        }
    }
}

#[test]
fn serve_names_the_missing_certificate_once() {
    let dir = tempfile::tempdir().unwrap();
    let o = eargate(
        &[
            "serve",
            "--tls-cert-file",
            "/nope.crt",
            "--tls-key-file",
            "/nope.key",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ],
        dir.path(),
    )
    .output()
    .unwrap();
    golden("serve-missing-certificate", &o, "stderr", &[]);
}

#[test]
fn serve_names_the_listen_address_in_use_once() {
    let dir = tempfile::tempdir().unwrap();
    let o = eargate(&["certs", "--out-dir", "certs"], dir.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let o = eargate(
        &[
            "serve",
            "--tls-cert-file",
            "certs/tls.crt",
            "--tls-key-file",
            "certs/tls.key",
            "--listen",
            &addr,
            "--metrics-listen",
            "127.0.0.1:0",
        ],
        dir.path(),
    )
    .output()
    .unwrap();
    golden(
        "serve-address-in-use",
        &o,
        "stderr",
        &[(&addr, "127.0.0.1:PORT")],
    );
}

#[test]
fn reconcile_without_any_kubeconfig_says_what_to_pass() {
    let dir = tempfile::tempdir().unwrap();
    let o = eargate(
        &[
            "reconcile",
            "--job-image",
            "x",
            "--metrics-listen",
            "127.0.0.1:0",
        ],
        dir.path(),
    )
    .output()
    .unwrap();
    golden("reconcile-no-kubeconfig", &o, "stderr", &[]);
}

fn unreachable_kubeconfig(dir: &Path) -> PathBuf {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: \"https://127.0.0.1:1\", insecure-skip-tls-verify: true}\ncontexts:\n- name: dev\n  context: {cluster: c, user: u}\ncurrent-context: dev\nusers:\n- name: u\n  user: {token: not-a-real-token}\n",
    )
    .unwrap();
    path
}

#[test]
fn reencrypt_names_the_server_and_kubeconfig_and_each_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    let kc = unreachable_kubeconfig(dir.path());
    let tmp = dir.path().display().to_string();
    let o = eargate(
        &[
            "reencrypt",
            "--kubeconfig",
            kc.to_str().unwrap(),
            "--resources",
            "secrets",
        ],
        dir.path(),
    )
    .output()
    .unwrap();
    golden("reencrypt-api-unreachable", &o, "stderr", &[(&tmp, "TMP")]);
    assert!(!String::from_utf8_lossy(&o.stderr).contains("not-a-real-token"));
    let o = eargate(
        &[
            "reencrypt",
            "--kubeconfig",
            kc.to_str().unwrap(),
            "--context",
            "prod",
            "--resources",
            "secrets",
        ],
        dir.path(),
    )
    .output()
    .unwrap();
    golden("reencrypt-unknown-context", &o, "stderr", &[(&tmp, "TMP")]);
}

#[test]
fn check_live_names_the_cluster_server_and_context() {
    let dir = tempfile::tempdir().unwrap();
    let kc = unreachable_kubeconfig(dir.path());
    let tmp = dir.path().display().to_string();
    let o = eargate(
        &[
            "check",
            "--kubeconfig",
            kc.to_str().unwrap(),
            "--cluster",
            "c1",
            "--patch",
            "{}",
        ],
        dir.path(),
    )
    .output()
    .unwrap();
    golden("check-live-unreachable", &o, "stderr", &[(&tmp, "TMP")]);
    let o = eargate(
        &[
            "check",
            "--kubeconfig",
            kc.to_str().unwrap(),
            "--cluster",
            "c1",
            "--patch",
            "{}",
            "-o",
            "json",
        ],
        dir.path(),
    )
    .output()
    .unwrap();
    golden(
        "check-live-unreachable-json",
        &o,
        "stdout",
        &[(&tmp, "TMP")],
    );
}

#[test]
fn verify_names_the_endpoint_without_debug_output() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("config.yaml"),
        "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n  - identity: {}\n",
    )
    .unwrap();
    let o = eargate(
        &[
            "verify",
            "--etcd-endpoints",
            "http://127.0.0.1:1",
            "--encryption-config",
            "config.yaml",
            "--timeout",
            "2s",
        ],
        dir.path(),
    )
    .output()
    .unwrap();
    golden("verify-etcd-unreachable", &o, "stderr", &[]);
}

#[test]
fn check_input_errors_name_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("broken.yaml"),
        "apiVersion: kubermatic.k8c.io/v1\nkind: Cluster\nspec:\n  features: [\n  x: y\n",
    )
    .unwrap();
    let o = eargate(
        &["check", "-f", "broken.yaml", "-f", "missing.yaml"],
        dir.path(),
    )
    .output()
    .unwrap();
    golden("check-bad-input", &o, "stderr", &[]);
}

#[test]
fn render_and_verify_refuse_redacted_configs() {
    let dir = tempfile::tempdir().unwrap();
    let examples = examples_dir();
    let cluster = examples.join("fleet/payments-prod.yaml");
    // A referenced Secret that was not given: which --secret to add, and how to get it.
    let o = eargate(&["render", "-f", cluster.to_str().unwrap()], dir.path())
        .output()
        .unwrap();
    golden(
        "render-missing-secret",
        &o,
        "stderr",
        &[(examples.to_str().unwrap(), "EXAMPLES")],
    );
    // render's own (redacted) output given back.
    std::fs::write(
        dir.path().join("key.yaml"),
        "apiVersion: v1\nkind: Secret\nmetadata: {name: payments-prod-2026-01}\nstringData: {key: QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY=}\n",
    )
    .unwrap();
    let o = eargate(
        &[
            "render",
            "-f",
            cluster.to_str().unwrap(),
            "--secret",
            "key.yaml",
        ],
        dir.path(),
    )
    .output()
    .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::write(dir.path().join("redacted.yaml"), &o.stdout).unwrap();
    let o = eargate(
        &[
            "render",
            "-f",
            cluster.to_str().unwrap(),
            "--secret",
            "key.yaml",
            "--previous",
            "redacted.yaml",
        ],
        dir.path(),
    )
    .output()
    .unwrap();
    golden("render-redacted-previous", &o, "stderr", &[]);
    let o = eargate(
        &[
            "verify",
            "--etcd-endpoints",
            "http://127.0.0.1:1",
            "--encryption-config",
            "redacted.yaml",
        ],
        dir.path(),
    )
    .output()
    .unwrap();
    golden("verify-redacted-config", &o, "stderr", &[]);
}

#[test]
fn keygen_refuses_a_secret_name_kubernetes_would_refuse() {
    let dir = tempfile::tempdir().unwrap();
    let o = eargate(&["keygen", "--secret-name", "Key_2026"], dir.path())
        .output()
        .unwrap();
    golden("keygen-bad-secret-name", &o, "stderr", &[]);
    assert!(o.stdout.is_empty());
}
