//! What a kube-apiserver reports it loaded, held against the real binary: the `hash` label
//! of `apiserver_encryption_config_controller_last_config_info` is what
//! `eargate_reconciler::expected_hash` computes from the exact bytes of the file given to
//! `--encryption-provider-config`, and it follows the file across restarts. Upstream gives
//! the format no stability guarantee; this test is what pins it for the version in
//! `tools/kubernetes` (a new minor fails here until it is added to `PROVEN_MINORS`).
#![allow(clippy::unwrap_used)] // a test's panic is its failure report

use base64::Engine as _;
use eargate_reconciler::{expected_hash, parse_loaded_configs, PROVEN_MINORS};
use eargate_testkit::rollout::random_key;
use eargate_testkit::user_cluster::UserCluster;

static B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn config(keys: &[(&str, &str)]) -> String {
    let mut yaml = String::from(
        "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n  - secretbox:\n      keys:\n",
    );
    for (name, secret) in keys {
        yaml += &format!("      - name: {name}\n        secret: {secret}\n");
    }
    yaml + "  - identity: {}\n"
}

fn kubectl_text(user: &UserCluster, args: &[&str]) -> String {
    let out = user.kubectl().args(args).output().expect("run kubectl");
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

#[test]
fn kube_apiserver_reports_the_hash_of_the_exact_config_bytes_it_loaded() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let Some(user) = UserCluster::new(dir.path(), "loaded", 1) else {
        return;
    };
    let (k1, k2) = (B64.encode(random_key()), B64.encode(random_key()));
    let a = config(&[("k1", &k1)]);
    // Same keys as far as kube-apiserver cares, different bytes: the hash is of the bytes.
    let b = config(&[("k1", &k1), ("k2", &k2)]);
    let (path_a, path_b) = (user.dir().join("a.yaml"), user.dir().join("b.yaml"));
    std::fs::write(&path_a, &a).expect("write a");
    std::fs::write(&path_b, &b).expect("write b");

    // Without a config: no series.
    user.start_replica(0, None);
    let version: serde_json::Value =
        serde_json::from_str(&kubectl_text(&user, &["version", "-o", "json"])).expect("JSON");
    let minor: u32 = version["serverVersion"]["minor"]
        .as_str()
        .and_then(|m| m.trim_end_matches('+').parse().ok())
        .expect("a minor version");
    let expected_a = expected_hash(minor, a.as_bytes()).unwrap_or_else(|| {
        panic!("kube-apiserver 1.{minor} is what the tests run, but its hash format is not in PROVEN_MINORS {PROVEN_MINORS:?}: check its encryptionconfig metrics and add it")
    });
    let metrics = kubectl_text(&user, &["get", "--raw", "/metrics"]);
    assert!(
        parse_loaded_configs(&metrics).is_empty(),
        "no config, no series: {:?}",
        parse_loaded_configs(&metrics)
    );

    let mut seen = Vec::new();
    for (path, text, expected) in [
        (&path_a, &a, expected_a.clone()),
        (
            &path_b,
            &b,
            expected_hash(minor, b.as_bytes()).expect("proven"),
        ),
        (&path_a, &a, expected_a.clone()),
    ] {
        user.start_replica(0, Some(path));
        let metrics = kubectl_text(&user, &["get", "--raw", "/metrics"]);
        let loaded = parse_loaded_configs(&metrics);
        assert_eq!(loaded.len(), 1, "one server, one series: {loaded:?}");
        assert_eq!(
            loaded[0].hash,
            expected,
            "the reported hash is the expected one of {}",
            path.display()
        );
        // The label is a hash, never the key material of the file it describes.
        for key in [&k1, &k2] {
            for w in key.as_bytes().windows(8) {
                let w = std::str::from_utf8(w).expect("base64 is ASCII");
                assert!(!metrics.contains(w), "key material in /metrics");
            }
        }
        assert!(text.len() > 100);
        seen.push(loaded[0].clone());
    }
    assert_ne!(seen[0].hash, seen[1].hash, "other bytes, other hash");
    assert_eq!(seen[0].hash, seen[2].hash, "the same bytes, the same hash");
    assert!(
        seen[0].apiserver_id_hash.starts_with("sha256:"),
        "the server identity is hashed too: {seen:?}"
    );
    eprintln!(
        "k8s_loaded_config: kube-apiserver 1.{minor} reports hash = sha256 of the file's bytes ({} then {})",
        seen[0].hash, seen[1].hash
    );
}
