//! `eargate verify` as a user runs it, against a real etcd: exit codes 0/1/2, text and JSON
//! output, and no plaintext or key material in anything it prints.
#![allow(clippy::unwrap_used)] // a test's panic is its failure report

#[path = "../crates/storage/tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::process::{Command, Output};

use eargate_storage::SecretboxKey;
use eargate_testkit::secrets::{assert_no_key_material, b64};
use support::{Etcd, EtcdExt as _};

const MARKER: &str = "TOPSECRET-PLAINTEXT-MARKER";

fn write_config(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("encryption-config.yaml");
    std::fs::write(
        &path,
        format!(
            "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n\
             - resources: [secrets]\n  providers:\n  - secretbox:\n      keys:\n\
             \x20     - name: key2\n        secret: {}\n      - name: key1\n        secret: {}\n  - identity: {{}}\n",
            b64([2; 32]),
            b64([1; 32])
        ),
    )
    .unwrap();
    path
}

fn eargate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_eargate"))
        .arg("verify")
        .args(args)
        .output()
        .expect("run eargate")
}

/// Neither the plaintext nor any piece of the three keys in what `eargate verify` printed.
fn assert_no_leak(out: &Output) {
    let texts = [("stdout", &out.stdout), ("stderr", &out.stderr)]
        .map(|(what, bytes)| (what, String::from_utf8_lossy(bytes).into_owned()));
    for (_, text) in &texts {
        assert!(!text.contains(MARKER), "plaintext leaked:\n{text}");
    }
    assert_no_key_material(&[b64([1; 32]), b64([2; 32]), b64([3; 32])], texts);
}

#[test]
fn exit_codes_outputs_and_no_leaks() {
    let Some(etcd) = Etcd::start(false) else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut c = etcd.client().await;
        let k2 = SecretboxKey::new("key2", &[2; 32]);
        let k1 = SecretboxKey::new("key1", &[1; 32]);
        let obj = format!(r#"{{"kind":"Secret","data":{{"a":"{MARKER}"}}}}"#);
        c.put(
            "/registry/secrets/default/ok",
            k2.seal(obj.as_bytes()),
            None,
        )
        .await
        .unwrap();
        c.put(
            "/registry/secrets/default/old-key",
            k1.seal(obj.as_bytes()),
            None,
        )
        .await
        .unwrap();
        c.put("/registry/secrets/default/plain", obj.clone(), None)
            .await
            .unwrap();
        c.put("/clean/secrets/default/plain-before", obj.clone(), None)
            .await
            .unwrap();
        c.put(
            "/clean/secrets/default/plain-before",
            k2.seal(obj.as_bytes()),
            None,
        )
        .await
        .unwrap();
    });
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let config = config.to_str().unwrap();
    let ep = etcd.endpoint.as_str();

    // Not everything sealed with the primary key: exit 1, offenders by namespace/name.
    let out = eargate(&["--etcd-endpoints", ep, "--encryption-config", config]);
    assert_eq!(out.status.code(), Some(1));
    assert_no_leak(&out);
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    assert!(
        text.contains("secrets default/plain") && text.contains("plaintext"),
        "{text}"
    );
    assert!(text.contains("sealed-with-secondary (key1)"), "{text}");
    assert!(text.contains("NOT VERIFIED"), "{text}");

    // JSON with history.
    let out = eargate(&[
        "--etcd-endpoints",
        ep,
        "--encryption-config",
        config,
        "--history",
        "--output",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_no_leak(&out);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["totals"]["plaintext"], 1);
    assert_eq!(doc["totals"]["sealed-with-secondary"], 1);
    assert_eq!(
        doc["history"]["compaction_revision"],
        serde_json::Value::Null
    );

    // Another prefix where every current object is sealed with the primary key: exit 0,
    // but the older plaintext revision fails --history.
    let out = eargate(&[
        "--etcd-endpoints",
        ep,
        "--encryption-config",
        config,
        "--prefix",
        "/clean",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = eargate(&[
        "--etcd-endpoints",
        ep,
        "--encryption-config",
        config,
        "--prefix",
        "/clean",
        "--history",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    assert!(
        text.contains("default/plain-before") && text.contains("etcdctl compact"),
        "{text}"
    );
    assert_no_leak(&out);

    // Unreachable etcd: exit 2 with a clear message.
    let out = eargate(&[
        "--etcd-endpoints",
        "http://127.0.0.1:1",
        "--encryption-config",
        config,
        "--timeout",
        "2s",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("error: cannot reach etcd at http://127.0.0.1:1 (--etcd-endpoints)")
            && !err.contains("MetadataMap"),
        "{err}"
    );

    // Bad key material: exit 2, names the key, never shows the material.
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        format!(
            "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n  - secretbox:\n      keys:\n      - name: short\n        secret: {}\n",
            b64([3; 16])
        ),
    )
    .unwrap();
    let out = eargate(&[
        "--etcd-endpoints",
        ep,
        "--encryption-config",
        bad.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("\"short\"") && err.contains("32"), "{err}");
    assert_no_key_material(&[b64([3; 16])], [("stderr", &err)]);

    // Not YAML: exit 2, no echo of the file's content.
    std::fs::write(&bad, format!("resources: [{{secret: {}", b64([3; 32]))).unwrap();
    let out = eargate(&[
        "--etcd-endpoints",
        ep,
        "--encryption-config",
        bad.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert_no_leak(&out);

    // A wildcard config is expanded from the etcd keyspace (no --resources needed): here
    // `*.*` with identity first finds the Secrets, which it would not seal.
    std::fs::write(&bad, "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: ['*.*']\n  providers:\n  - identity: {}\n").unwrap();
    let out = eargate(&[
        "--etcd-endpoints",
        ep,
        "--encryption-config",
        bad.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_no_leak(&out);
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    assert!(
        text.contains("note: *.* expanded from the etcd keyspace to: secrets"),
        "{text}"
    );
    assert!(
        text.contains("secrets: the config's first provider is identity"),
        "{text}"
    );

    // A wildcard kube-apiserver refuses is bad input: exit 2 before connecting.
    std::fs::write(&bad, "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: ['*']\n  providers:\n  - identity: {}\n").unwrap();
    let out = eargate(&[
        "--etcd-endpoints",
        "http://127.0.0.1:1",
        "--encryption-config",
        bad.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not a wildcard kube-apiserver accepts") && !err.contains("cannot reach"),
        "{err}"
    );
}
